"""Adobe's ``aio rt:action:create NAME [FILE] --docker IMAGE`` (the CLI set-up is
``aiocli.py``'s) against a standalone whose invoker runs custom images on Docker.

The image is the tests' tiny custom image (tests/dockersupport.py, tests/fixtures/tiny.c):
its ``/run`` echoes what it was sent, with the code ``/init`` gave it, so each test sees
what ``aio`` sent reach the container. ``aio --docker`` sends ``exec`` as
``{"kind": "blackbox", "image": IMAGE}``, plus ``"code"`` (the file's text, or a zip in
base64, with no ``binary`` flag) when a file is given.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from _required import unavailable
from _standalone import Standalone, start
from aiocli import Aio, install
from dockersupport import docker_ready, tiny_image

pytestmark = pytest.mark.compat

HELLO_JS = "function main() {\n  console.log('Hello World');\n  return { hello: 'world' };\n}\n"


def _exec_zip() -> bytes:
    """A dockerskeleton-style archive: an ``exec`` to run (the tiny image only keeps it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("exec", "#!/bin/sh\necho '{\"zipped\": true}'\n")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image() -> str:
    problem = docker_ready()
    if problem is not None:
        unavailable(f"Docker backend: {problem}")
    return tiny_image()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, image: str) -> Iterator[Standalone]:
    # The standalone starts its Docker backend when a dockerd answers (docker_ready above).
    squall = start(tmp_path_factory.mktemp("aio-docker-squall"), keep_warm_s=60)
    try:
        yield squall
    finally:
        squall.stop_cleanly()


@pytest.fixture(scope="module")
def aio(server: Standalone, tmp_path_factory: pytest.TempPathFactory) -> Aio:
    home = tmp_path_factory.mktemp("aio-docker-home")
    (home / "hello.js").write_text(HELLO_JS)
    (home / "action.zip").write_bytes(_exec_zip())
    return Aio(install(), server, home)


def _got(aio: Aio, name: str, *flags: str) -> dict[str, Any]:
    """``aio rt:action:get NAME``: the action's name on a line, then its JSON."""
    out = aio.run("rt:action:get", name, *flags).stdout
    first, _, rest = out.partition("\n")
    assert first == name, out
    shown: dict[str, Any] = json.loads(rest)
    return shown


def test_docker_image_alone(aio: Aio, server: Standalone, image: str) -> None:
    # When an action is created from the image alone, and invoked with a parameter
    aio.run("rt:action:create", "aioTiny", "--docker", image)
    invoked = aio.run("rt:action:invoke", "aioTiny", "--result", "-p", "who", "aio")
    # Then the image ran it, with what OpenWhisk's /run sends
    result = json.loads(invoked.stdout)
    assert result["echo"]["value"] == {"who": "aio"}
    assert result["echo"]["action_name"] == f"/{server.namespace}/aioTiny"
    # And /init gave the image no code (it brings its own)
    assert result["code"] is None
    # And get shows a blackbox action of the image, as OpenWhisk does: no code
    shown = _got(aio, "aioTiny")
    assert shown["exec"] == {"kind": "blackbox", "image": image, "binary": False}
    # And the list shows its kind
    [row] = [line for line in aio.run("rt:action:list").stdout.splitlines() if "aioTiny" in line]
    assert "blackbox" in row.split(), row
    aio.run("rt:action:delete", "aioTiny")


def test_docker_image_with_a_code_file(aio: Aio, image: str) -> None:
    # When an action is created from a JavaScript file and the image, and invoked
    aio.run("rt:action:create", "aioTinyCode", "hello.js", "--docker", image)
    invoked = aio.run("rt:action:invoke", "aioTinyCode", "--result")
    # Then the image got the file's text at /init, unchanged, and ran
    result = json.loads(invoked.stdout)
    assert result["code"] == HELLO_JS
    assert result["echo"]["value"] == {}
    # And get shows the image and the kind, and --code the file
    shown = _got(aio, "aioTinyCode")
    assert shown["exec"] == {"kind": "blackbox", "image": image, "binary": False}
    code = aio.run("rt:action:get", "aioTinyCode", "--code").stdout
    assert code == HELLO_JS + "\n"  # aio's log adds the line end
    aio.run("rt:action:delete", "aioTinyCode")


def test_docker_image_with_a_zip(aio: Aio, image: str) -> None:
    # When an action is created from a zip and the image (aio sends it in base64, no kind)
    aio.run("rt:action:create", "aioTinyZip", "action.zip", "--docker", image)
    invoked = aio.run("rt:action:invoke", "aioTinyZip", "--result")
    # Then the server took it as binary, and the image got the archive at /init
    result = json.loads(invoked.stdout)
    assert base64.b64decode(result["code"]) == (aio.home / "action.zip").read_bytes()
    shown = _got(aio, "aioTinyZip")
    assert shown["exec"] == {"kind": "blackbox", "image": image, "binary": True}
    aio.run("rt:action:delete", "aioTinyZip")
