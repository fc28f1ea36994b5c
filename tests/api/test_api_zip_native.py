"""Zip actions (Node.js, Python with a virtualenv) and native executables, through the API.

Each zip is built here with ``zipfile``, sent base64-encoded as the action's code, and
invoked blocking on the real runtimes in the process sandbox.
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from _required import unavailable
from apisupport import NS, assert_error

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
ABNORMAL_RUN = "The action did not produce a valid response and exited unexpectedly."
INVALID_JSON = "The action did not produce a valid JSON or JSON Array response."
# A native action loop using only sh builtins: the greeting and the activation's
# namespace, read from the JSON line with parameter expansion.
SH_HELLO = r"""#!/bin/sh
while read -r line; do
  echo "hello from sh"
  name=${line#*\"name\":\"}; name=${name%%\"*}
  ns=${line#*\"namespace\":\"}; ns=${ns%%\"*}
  echo "{\"greeting\": \"hello $name\", \"namespace\": \"$ns\"}" >&3
done
"""
C_HELLO = r"""
#include <stdio.h>
int main(void) {
    char line[65536];
    FILE *out = fdopen(3, "w");
    while (fgets(line, sizeof line, stdin)) {
        puts("hello from C");
        fflush(stdout);
        fputs("{\"compiled\": true}\n", out);
        fflush(out);
    }
    return 0;
}
"""


@pytest.fixture
def compiled_exec(tmp_path: Path) -> bytes:
    """C_HELLO built with this machine's C compiler (skipped without one, except in CI)."""
    cc = shutil.which("cc")
    if cc is None:
        unavailable("no C compiler (cc) on this machine to build a native action")
    (tmp_path / "action.c").write_text(C_HELLO)
    subprocess.run(
        [cc, "-O1", "-o", str(tmp_path / "exec"), str(tmp_path / "action.c")], check=True
    )
    return (tmp_path / "exec").read_bytes()


def zip_b64(files: Mapping[str, str | bytes], modes: dict[str, int] | None = None) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (modes or {}).get(name, 0o644) << 16
            archive.writestr(info, data)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


async def create_and_invoke(
    client: httpx.AsyncClient, name: str, exec_: dict[str, Any], payload: Any = None
) -> tuple[int, dict[str, Any]]:
    r = await client.put(f"{NS}/actions/{name}", json={"exec": exec_})
    assert r.status_code == 200, r.text
    assert r.json()["exec"]["binary"] is exec_.get("binary", True)
    r = await client.post(f"{NS}/actions/{name}", json=payload or {}, params={"blocking": "true"})
    return r.status_code, r.json()


async def test_node_zip_uses_its_node_modules(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a Node.js zip whose package.json names its main file, with a dependency in
    # node_modules (no network install happens)
    code = zip_b64(
        {
            "package.json": '{"name": "a", "main": "lib/main.js"}',
            "lib/main.js": (
                "const shout = require('shout');\n"
                "exports.main = (p) => ({greeting: shout('hello ' + p.name)});\n"
            ),
            "node_modules/shout/index.js": "module.exports = (s) => s.toUpperCase();\n",
        }
    )
    # When it is created from the base64 zip and invoked
    status, record = await create_and_invoke(
        client, unique("nodezip"), {"kind": "nodejs:default", "code": code}, {"name": "zip"}
    )
    # Then the dependency shipped in the zip did the work
    assert status == 200, record
    assert record["response"]["result"] == {"greeting": "HELLO ZIP"}


async def test_python_zip_honours_its_virtualenv(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given a Python zip with __main__.py, a helper module, and a pure-Python package
    # installed in virtualenv/ (as `virtualenv virtualenv && pip install` leaves it)
    site = "virtualenv/lib/python3.11/site-packages"
    code = zip_b64(
        {
            "__main__.py": (
                "import helper\nimport tinyjoke\n\n"
                "def main(args):\n"
                "    return {'joke': tinyjoke.tell(args['name']), 'from': helper.WHERE,\n"
                "            'site': tinyjoke.__file__.split('/virtualenv/')[1]}\n"
            ),
            "helper.py": "WHERE = 'helper'\n",
            f"{site}/tinyjoke/__init__.py": "def tell(name):\n    return f'{name} walks in'\n",
        }
    )
    # When it is created and invoked
    status, record = await create_and_invoke(
        client, unique("pyzip"), {"kind": "python:default", "code": code}, {"name": "a zip"}
    )
    # Then the package came from the zip's virtualenv
    assert status == 200, record
    assert record["response"]["result"] == {
        "joke": "a zip walks in",
        "from": "helper",
        "site": "lib/python3.11/site-packages/tinyjoke/__init__.py",
    }


@pytest.mark.parametrize("kind", ["native", "blackbox"])
async def test_native_shell_script(client: httpx.AsyncClient, unique: Unique, kind: str) -> None:
    # Given a zip holding an `exec` shell script, as kind native or as OpenWhisk's
    # `wsk action create --native` sends it (blackbox on the docker skeleton)
    exec_: dict[str, Any] = {"kind": kind, "code": zip_b64({"exec": SH_HELLO}, {"exec": 0o755})}
    if kind == "blackbox":
        exec_["image"] = "openwhisk/dockerskeleton"
    name = unique("native")
    # When it is invoked
    status, record = await create_and_invoke(client, name, exec_, {"name": "sh"})
    # Then its fd 3 line is the result and its stdout the logs
    assert status == 200, record
    assert record["response"]["result"] == {"greeting": "hello sh", "namespace": "guest"}
    assert [line.split(" ", 1)[1] for line in record["logs"]] == ["stdout: hello from sh"]
    # And the action shows the kind it was created with
    got = (await client.get(f"{NS}/actions/{name}")).json()
    assert {k: v for k, v in got["exec"].items() if k != "code"} == {
        k: v for k, v in exec_.items() if k != "code"
    } | {"binary": True}


async def test_native_compiled_c(
    client: httpx.AsyncClient, unique: Unique, compiled_exec: bytes
) -> None:
    # Given a small C program built here as the zip's exec
    code = zip_b64({"exec": compiled_exec}, {"exec": 0o755})
    # When it is invoked
    status, record = await create_and_invoke(
        client, unique("cnative"), {"kind": "native", "code": code}
    )
    # Then it answered, and logged
    assert status == 200, record
    assert record["response"]["result"] == {"compiled": True}
    assert [line.split(" ", 1)[1] for line in record["logs"]] == ["stdout: hello from C"]


@pytest.mark.parametrize(
    ("kind", "files", "message"),
    [
        (
            "native",
            {"run": "#!/bin/sh\n"},
            "Initialization has failed due to: Zip file does not include exec",
        ),
        (
            "python:3.11",
            {"main.py": "def main(a):\n    return a\n"},
            "Initialization has failed due to: Zip file does not include __main__.py",
        ),
        (
            "nodejs:20",
            {"main.js": "exports.main = () => ({})\n"},
            "Initialization has failed due to: Zipped actions must contain either package.json "
            "or index.js at the root.",
        ),
    ],
)
async def test_zip_without_its_entry_fails_init(
    client: httpx.AsyncClient, unique: Unique, kind: str, files: dict[str, str], message: str
) -> None:
    # Given a zip without the file its kind starts from / When it is invoked
    status, record = await create_and_invoke(
        client, unique("noentry"), {"kind": kind, "code": zip_b64(files)}
    )
    # Then the activation is a developer error saying what is missing
    assert status == 502
    assert record["response"]["status"] == "action developer error"
    assert record["response"]["result"] == {"error": message}


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("read -r line; exit 3", ABNORMAL_RUN),
        ("read -r line; echo 'this is not json' >&3", INVALID_JSON),
    ],
)
async def test_native_bad_answers(
    client: httpx.AsyncClient, unique: Unique, script: str, message: str
) -> None:
    # Given an exec that exits, or answers with a line that is not JSON
    code = zip_b64({"exec": f"#!/bin/sh\n{script}\n"})
    # When it is invoked
    status, record = await create_and_invoke(
        client, unique("badnative"), {"kind": "native", "code": code}
    )
    # Then OpenWhisk's developer error
    assert status == 502
    assert record["response"]["status"] == "action developer error"
    assert record["response"]["result"] == {"error": message}


async def test_blackbox_with_a_custom_image_is_kept_with_or_without_code(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # When blackbox actions name a custom image, one without code and one with a zip
    for n, extra in enumerate(({}, {"code": zip_b64({"exec": "x"})})):
        exec_ = {"kind": "blackbox", "image": "someone/custom:1", **extra}
        name = unique(f"image{n}")
        r = await client.put(f"{NS}/actions/{name}", json={"exec": exec_})
        # Then they are created and read back with their image (any image: the invoker's
        # Docker daemon decides when they run)
        assert r.status_code == 200, r.text
        got = (await client.get(f"{NS}/actions/{name}")).json()["exec"]
        assert got["kind"] == "blackbox"
        assert got["image"] == "someone/custom:1"
        assert got["binary"] is bool(extra)


async def test_blackbox_with_a_malformed_image_name_is_400(
    client: httpx.AsyncClient, unique: Unique
) -> None:
    # When a blackbox action names something that is no image name
    exec_ = {"kind": "blackbox", "image": "Not An/Image!"}
    r = await client.put(f"{NS}/actions/{unique('image')}", json={"exec": exec_})
    # Then 400 naming it
    error = assert_error(r, 400)
    assert "'Not An/Image!' is not a valid image name" in error
    # And one that names no image is refused as OpenWhisk refuses it, and not created
    name = unique("noimage")
    r = await client.put(f"{NS}/actions/{name}", json={"exec": {"kind": "blackbox", "code": "x"}})
    assert assert_error(r, 400) == (
        "The request content was malformed:\n"
        "'image' must be a string defined in 'exec' for 'blackbox' actions"
    )
    assert (await client.get(f"{NS}/actions/{name}")).status_code == 404


async def test_root_lists_the_native_kind(anonymous: httpx.AsyncClient) -> None:
    # When GET / / Then the native kind is among the runtimes
    body = (await anonymous.get("/")).json()
    assert [k["kind"] for k in body["runtimes"]["native"]] == ["native"]
