"""The client's pure parts: ``-p`` values, qualified names, API hosts, wskprops files,
exit codes, and an action's ``exec`` from a file."""

from __future__ import annotations

import base64
import json
import stat
import zipfile
from pathlib import Path

import pytest

from squall.cli.client import exits
from squall.cli.client.action import action_body, web_annotations
from squall.cli.client.action_exec import code_exec, infer_kind, sequence_exec
from squall.cli.client.config import base_url, read_props, write_props
from squall.cli.client.errors import ClientError
from squall.cli.client.names import QualifiedName, parse
from squall.cli.client.params import collect, parse_value


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("3", 3),
        ("1.5", 1.5),
        ("true", True),
        ('{"a": [1]}', {"a": [1]}),
        ('"quoted"', "quoted"),
        ("plain words", "plain words"),
        ("", ""),
    ],
)
def test_a_value_is_json_when_it_parses(raw: str, value: object) -> None:
    assert parse_value(raw) == value


def test_pairs_override_the_file(tmp_path: Path) -> None:
    file = tmp_path / "p.json"
    file.write_text(json.dumps({"a": 1, "b": 2}))

    assert collect((("b", "3"), ("c", "x")), file) == {"a": 1, "b": 3, "c": "x"}


def test_a_param_file_must_hold_an_object(tmp_path: Path) -> None:
    file = tmp_path / "p.json"
    file.write_text("[1]")
    with pytest.raises(ClientError, match="expected a JSON object"):
        collect((), file)
    with pytest.raises(ClientError, match="Invalid parameter file"):
        collect((), tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", QualifiedName("_", "hello")),
        ("pkg/hello", QualifiedName("_", "pkg/hello")),
        ("/ns/hello", QualifiedName("ns", "hello")),
        ("/ns/pkg/hello", QualifiedName("ns", "pkg/hello")),
    ],
)
def test_qualified_names(text: str, expected: QualifiedName) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["", "/ns", "/ns/", "a/b/c", "pkg/"])
def test_malformed_names_are_refused(text: str) -> None:
    with pytest.raises(ClientError, match="not a valid qualified name"):
        parse(text)


def test_url_paths_keep_the_package_slash_only() -> None:
    assert QualifiedName("_", "pkg/a b").url_path == "pkg/a%20b"
    assert str(QualifiedName("guest", "pkg/a")) == "/guest/pkg/a"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1:3233", "http://127.0.0.1:3233"),
        ("localhost:3233/", "http://localhost:3233"),
        ("openwhisk.example.com", "https://openwhisk.example.com"),
        ("http://example.com:8080", "http://example.com:8080"),
        ("https://example.com/", "https://example.com"),
    ],
)
def test_api_hosts_with_or_without_scheme(host: str, url: str) -> None:
    assert base_url(host) == url


def test_an_unusable_api_host_is_refused() -> None:
    with pytest.raises(ClientError) as caught:
        base_url("ftp://example.com")
    assert caught.value.exit_code == exits.USAGE


def test_props_round_trip_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "wskprops"
    write_props(path, {"APIHOST": "h:1", "AUTH": "u:k"})
    path.write_text(path.read_text() + "# comment\nNOEQUALS\n")

    assert read_props(path) == {"APIHOST": "h:1", "AUTH": "u:k"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_props(tmp_path / "missing") == {}


def test_exit_codes_follow_wsk() -> None:
    assert [exits.for_status(s) for s in (400, 401, 404, 409, 502)] == [144, 145, 148, 153, 246]
    assert exits.for_status(404) == exits.NOT_FOUND


def test_kinds_from_files(tmp_path: Path) -> None:
    node_zip, python_zip = tmp_path / "n.zip", tmp_path / "p.zip"
    with zipfile.ZipFile(node_zip, "w") as z:
        z.writestr("package.json", "{}")
    with zipfile.ZipFile(python_zip, "w") as z:
        z.writestr("__main__.py", "")

    assert infer_kind(Path("a.js")) == "nodejs:default"
    assert infer_kind(Path("a.py")) == "python:default"
    assert infer_kind(node_zip) == "nodejs:default"
    assert infer_kind(python_zip) == "python:default"
    with pytest.raises(ClientError, match=r"'\.rb' is not a supported action runtime"):
        infer_kind(Path("a.rb"))


def test_zips_travel_as_base64(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("__main__.py", "def main(a): return a")

    exec_ = code_exec(archive, main="entry")

    assert exec_["binary"] is True and exec_["main"] == "entry"
    assert base64.b64decode(exec_["code"]) == archive.read_bytes()


def test_sequences_are_fully_qualified() -> None:
    assert sequence_exec("a, pkg/b,/other/c", "guest") == {
        "kind": "sequence",
        "components": ["/guest/a", "/guest/pkg/b", "/other/c"],
    }


def test_web_flags() -> None:
    assert web_annotations("raw", None) == {"web-export": True, "raw-http": True, "final": True}
    assert web_annotations("false", None) == {"web-export": False, "raw-http": False}
    assert web_annotations("true", "s3cret")["require-whisk-auth"] == "s3cret"
    assert isinstance(web_annotations("yes", "true")["require-whisk-auth"], int)
    with pytest.raises(ClientError, match="only valid when the --web option is enabled"):
        web_annotations(None, "s3cret")


def test_docker_makes_a_blackbox_exec_with_or_without_code(tmp_path: Path) -> None:
    # When an action is made with --docker, with no file and with a zip
    bare = action_body("_", docker="me/echo:1")
    archive = tmp_path / "code.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("exec", "#!/bin/sh\n")
    zipped = action_body("_", archive, docker="me/echo:1", main="run")
    # Then both are blackbox actions of that image, the second with the zip as its code
    assert bare["exec"] == {"kind": "blackbox", "image": "me/echo:1"}
    assert zipped["exec"]["kind"] == "blackbox"
    assert zipped["exec"]["image"] == "me/echo:1"
    assert zipped["exec"]["main"] == "run"
    assert base64.b64decode(zipped["exec"]["code"]) == archive.read_bytes()
    # And a kind beside --docker is refused
    with pytest.raises(ClientError):
        action_body("_", docker="me/echo:1", kind="nodejs:20")
