"""The README's commands, run as a new user runs them: in order, word for word.

Every ``sh`` block from "Use it" up to "A cluster" (which needs PostgreSQL and NATS) runs
as one ``bash -e`` script against a fresh standalone, with only the README's port
replaced by the server's. The script runs in a directory laid out like a checkout after
``./dev standalone`` (``.venv`` is this interpreter's environment, ``.squall`` the
server's home) with a ``PATH`` that does not hold ``.venv/bin``: the README itself must
put ``squall`` there. ``aio`` is the pinned install of ``aiocli.py``, on ``PATH`` as
``npm install -g`` would put it. The ``js`` block is saved as ``hello.js``, as the README
says.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _required import unavailable
from _standalone import clean_env, start
from aiocli import install

pytestmark = pytest.mark.compat

README = Path(__file__).resolve().parents[2] / "README.md"
README_PORT = "127.0.0.1:3233"
SCRIPT_DEADLINE_S = 600.0
KEY = re.compile(r"^[0-9a-f-]{36}:[0-9A-Za-z]{64}$", re.M)


def readme_script(text: str, host_port: str) -> tuple[str, str]:
    """The ``sh`` blocks of "Use it" .. "A cluster" as one script, and the ``js`` block."""
    start_at, end_at = text.index("## Use it"), text.index("## A cluster")
    blocks = re.findall(r"```(\w+)\n(.*?)```", text[start_at:end_at], re.S)
    [hello_js] = [body for lang, body in blocks if lang == "js"]
    script = "\n".join(body for lang, body in blocks if lang == "sh")
    assert README_PORT in script, "the README's examples should name the default port"
    return script.replace(README_PORT, host_port), hello_js


def test_the_readme_works_as_written(tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        unavailable("curl is not installed (apt-get install curl); the README uses it")
    # Given a fresh standalone, and a directory laid out as the checkout after ./dev standalone
    aio = install()
    server = start(tmp_path / "home")
    try:
        work = tmp_path / "checkout"
        work.mkdir()
        (work / ".venv").symlink_to(sys.prefix)
        (work / ".squall").symlink_to(server.home)
        tools = tmp_path / "tools"
        tools.mkdir()
        (tools / "aio").write_text(f'#!/bin/sh\nexec "{shutil.which("node")}" "{aio}" "$@"\n')
        (tools / "aio").chmod(0o755)
        script, hello_js = readme_script(README.read_text(), server.api_host.split("//", 1)[1])
        (work / "hello.js").write_text(hello_js)
        user = tmp_path / "user"
        user.mkdir()
        # A PATH without this environment's bin: the README must say how to get squall.
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if sys.prefix not in p]
        env = clean_env(
            {
                "PATH": os.pathsep.join([*path, str(tools)]),
                "HOME": str(user),
                "XDG_CONFIG_HOME": str(user / ".config"),
                "XDG_DATA_HOME": str(user / ".local" / "share"),
                "XDG_CACHE_HOME": str(user / ".cache"),
                "CI": "true",
                "AIO_TELEMETRY_DISABLED": "true",
                "NO_COLOR": "1",
            }
        )
        for inherited in ("WSK_CONFIG_FILE", "SQUALL_HOME", "VIRTUAL_ENV"):
            env.pop(inherited, None)
        # When the README's commands run in order
        done = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=SCRIPT_DEADLINE_S,
            check=False,
        )
        # Then every one succeeds
        report = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\nserver:\n{server.log()}"
        assert done.returncode == 0, report
        # And curl, squall and aio each print the seed's result, aio its log line; so does
        # curl through the API gateway's route, whose API is then deleted
        assert '{"hello":"world"}' in done.stdout, report
        assert done.stdout.count('"hello": "world"') == 3, report
        assert "ok: deleted API /hello" in done.stdout, report
        assert "stdout: Hello World" in done.stdout, report
        # And the operator's commands create a namespace and print its key
        assert KEY.search(done.stdout), report
    finally:
        server.stop_cleanly()
