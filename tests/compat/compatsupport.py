"""Running the compatibility scripts: each Node script drives the official ``openwhisk``
client against the live server and prints what it observed as one JSON object; the
assertions are in the Python tests. Without node or the installed client the tests skip
locally and fail in CI (``CI=true``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from _required import unavailable
from _standalone import Standalone, clean_env

HERE = Path(__file__).resolve().parent
SCRIPT_DEADLINE_S = 60.0
LOG_LINE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"
NOT_FOUND = "The requested resource does not exist."


def _node() -> str:
    node = shutil.which("node")
    problem = None
    if node is None:
        problem = "node is not installed (apt-get install nodejs npm)"
    elif not (HERE / "node_modules" / "openwhisk" / "package.json").exists():
        problem = "the openwhisk client is not installed: (cd tests/compat && npm install)"
    if problem is not None:
        unavailable(problem)
    assert node is not None
    return node


def run_script(standalone: Standalone, script: str) -> dict[str, Any]:
    """Run ``tests/compat/<script>`` against the server; its JSON observation."""
    env = clean_env(
        {
            "SQUALL_APIHOST": standalone.api_host,
            "SQUALL_AUTH": standalone.auth,
            "SQUALL_PREFIX": uuid.uuid4().hex[:8],
        }
    )
    done = subprocess.run(
        [_node(), str(HERE / script)],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_DEADLINE_S,
        check=False,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stderr}"
    observed: dict[str, Any] = json.loads(done.stdout)
    return observed


def rejection(observed: dict[str, Any]) -> dict[str, Any]:
    assert "failed" in observed, f"expected the client to reject, it resolved: {observed}"
    failed: dict[str, Any] = observed["failed"]
    assert failed["name"] == "OpenWhiskError"
    return failed


def assert_rejected(observed: dict[str, Any], status: int, message: str) -> None:
    """The client rejected with ``status`` and OpenWhisk's ``message``, in its own
    message and in the error body (with the transaction id as ``code``)."""
    failed = rejection(observed)
    assert failed["statusCode"] == status, failed
    assert message in failed["message"], failed
    assert failed["error"]["error"] == message
    assert re.fullmatch(r"[0-9a-zA-Z]+", failed["error"]["code"])
