"""The runtime manifest, kind resolution, and the server's ``exec.binary`` rule."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

import pytest

from squall.entities.kinds import MAX_CODE_BYTES, CodeExec, is_binary_code, is_native_image
from squall.entities.manifest import resolve_kind, runtimes_json, valid_kinds
from squall.errors import BadRequest, PayloadTooLarge

MALFORMED = "The request content was malformed:\n"


def zip_base64(files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(
    ("kind", "resolved"),
    [
        ("nodejs:default", "nodejs:20"),
        ("python:default", "python:3.13"),
        ("nodejs:20", "nodejs:20"),
        ("python:3.11", "python:3.11"),
    ],
)
def test_resolve_kind(kind: str, resolved: str) -> None:
    assert resolve_kind(kind) == resolved


@pytest.mark.parametrize("kind", ["nodejs:1", "python:2", "java:default", "docker", "NODEJS:20"])
def test_unknown_kind_message(kind: str) -> None:
    # When a kind is not in the manifest / Then 400 naming it and every valid kind
    with pytest.raises(BadRequest) as e:
        resolve_kind(kind)
    message = e.value.message
    assert message.startswith(
        f"The specified runtime '{kind}' is not supported by this platform. Valid values are: "
    )
    assert message.endswith(".")
    for valid in valid_kinds():
        assert f"'{valid}'" in message


def test_manifest_has_one_default_per_family() -> None:
    runtimes = runtimes_json()
    assert set(runtimes) == {"nodejs", "python", "native"}
    for family, kinds in runtimes.items():
        assert sum(1 for k in kinds if k["default"]) == 1
        for k in kinds:
            assert k["kind"].partition(":")[0] == family
            assert k["deprecated"] is False


@pytest.mark.parametrize(
    ("code", "binary"),
    [
        ("function main() { return {}; }", False),
        ("def main(args):\n    return args\n", False),
        ("", False),
        ("   ", False),
        ("abc", False),  # length not a multiple of 4
        ("abcd", True),  # valid base64, so OpenWhisk calls it binary too
        ("ab=c", False),  # padding in the middle
        ("a-b_", False),  # the URL-safe alphabet is not base64
        (zip_base64({"index.js": "exports.main = () => ({})"}), True),
        ("\n" + zip_base64({"__main__.py": "def main(a): return a"}) + "\n", True),
    ],
)
def test_is_binary_code(code: str, binary: bool) -> None:
    assert is_binary_code(code) is binary


def test_exec_from_request_resolves_kind_and_decides_binary() -> None:
    # Given a client that claims binary for source text
    raw = {"kind": "nodejs:default", "code": "function main() {}", "binary": True}
    exec_ = CodeExec.from_request(raw)
    # Then the server's rule wins
    assert exec_ == CodeExec("nodejs:20", "function main() {}", False, None)
    archive = zip_base64({"index.js": "x"})
    assert CodeExec.from_request({"kind": "nodejs:20", "code": archive}).binary is True


def test_exec_json_with_and_without_code() -> None:
    exec_ = CodeExec("python:3.11", "code", False, "handler")
    assert exec_.to_json() == {
        "kind": "python:3.11",
        "code": "code",
        "binary": False,
        "main": "handler",
    }
    assert exec_.to_json(code=False) == {"kind": "python:3.11", "binary": False, "main": "handler"}
    assert "main" not in CodeExec("nodejs:20", "c", False).to_json()
    assert CodeExec.from_stored(exec_.to_json()) == exec_


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("code", "'exec' must be an object."),
        ({"code": "x"}, "'kind' must be a string."),
        ({"kind": "", "code": "x"}, "'kind' must be a string."),
        ({"kind": 20, "code": "x"}, "'kind' must be a string."),
        (
            {"kind": "nodejs:default"},
            "'code' must be a string defined in 'exec' for 'nodejs:20' actions",
        ),
        ({"kind": "nodejs:20", "code": "x", "main": ""}, "'main' must be a string."),
        ({"kind": "nodejs:20", "code": "x", "main": 3}, "'main' must be a string."),
    ],
)
def test_malformed_exec(raw: Any, message: str) -> None:
    with pytest.raises(BadRequest) as e:
        CodeExec.from_request(raw)
    assert e.value.message == MALFORMED + message


def test_code_over_48_mb_is_413() -> None:
    code = "x" * (MAX_CODE_BYTES + 1)
    with pytest.raises(PayloadTooLarge) as e:
        CodeExec.from_request({"kind": "nodejs:20", "code": code})
    assert e.value.status == 413
    assert (
        e.value.message
        == f"Code larger than allowed: {MAX_CODE_BYTES + 1} > {MAX_CODE_BYTES} bytes."
    )


@pytest.mark.parametrize("image", ["openwhisk/dockerskeleton", "openwhisk/dockerskeleton:1.3"])
def test_blackbox_runs_as_native_on_the_skeleton_image(image: str) -> None:
    # When a blackbox action names OpenWhisk's native skeleton
    raw = {"kind": "blackbox", "code": "#!/bin/sh\n", "image": image}
    exec_ = CodeExec.from_request(raw)
    # Then it is kept as OpenWhisk shows it
    assert exec_.to_json() == {
        "kind": "blackbox",
        "image": image,
        "code": "#!/bin/sh\n",
        "binary": False,
    }
    assert CodeExec.from_stored(exec_.to_json()) == exec_


@pytest.mark.parametrize(
    "raw",
    [
        {"kind": "blackbox", "code": "#!/bin/sh\n"},
        {"kind": "blackbox"},
        {"kind": "blackbox", "code": "#!/bin/sh\n", "image": ""},
        {"kind": "blackbox", "code": "#!/bin/sh\n", "image": 7},
    ],
)
def test_a_blackbox_without_an_image_is_refused_as_openwhisk_does(raw: dict[str, object]) -> None:
    # When a blackbox action names no image (or no string), with or without code
    with pytest.raises(BadRequest) as e:
        CodeExec.from_request(raw)
    # Then OpenWhisk's message says the image is needed, before anything about the code
    assert e.value.message == (
        "The request content was malformed:\n"
        "'image' must be a string defined in 'exec' for 'blackbox' actions"
    )


@pytest.mark.parametrize("code", [None, "", " \n"])
def test_blackbox_with_a_custom_image_needs_no_code(code: str | None) -> None:
    # When a blackbox action names a custom image and no code (or a blank one)
    raw = {"kind": "blackbox", "image": "me/mine:2", **({} if code is None else {"code": code})}
    exec_ = CodeExec.from_request(raw)
    # Then it is kept without code, and shown as OpenWhisk shows it: no "code" member
    assert (exec_.kind, exec_.image, exec_.code, exec_.binary) == (
        "blackbox",
        "me/mine:2",
        "",
        False,
    )
    assert not exec_.has_code
    assert exec_.to_json() == {"kind": "blackbox", "image": "me/mine:2", "binary": False}
    assert CodeExec.from_stored(exec_.to_json()) == exec_
    # And with code it is kept and shown
    with_code = CodeExec.from_request({**raw, "code": "function main() {}"})
    assert with_code.has_code
    assert with_code.to_json()["code"] == "function main() {}"
    # And the image runs on Docker, not natively
    assert not is_native_image("me/mine:2")
    assert is_native_image("openwhisk/dockerskeleton:1.3")
    # And a bad image name is a 400
    with pytest.raises(BadRequest) as e:
        CodeExec.from_request({"kind": "blackbox", "image": "UPPER/case"})
    assert "'UPPER/case' is not a valid image name" in e.value.message
