"""What a standalone server loads: none of the clients only other shapes or routes use.

Each module is memory the server holds for its whole life (bench/README.md,
"memory_at_concurrency.py": NATS's client and aiohttp, the Docker client, httpx with
rich and pygments, pyroute2 cost it ~22 MiB together). They are imported where they are
used: the cluster's providers, the Docker backend's first connection, the log
forwarder's first batch, the PostgreSQL store; the sandbox network speaks rtnetlink
itself (squall/sandbox/rtnl.py). zoneinfo reads sysconfig's build variables (~0.6 MiB).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_IN_STANDALONE = (
    "nats", "aiohttp", "aiodocker", "httpx", "rich", "pygments", "psycopg", "pyroute2",
    "cryptography",  # its first seal or open imports it (store/encryption.py)
    "zoneinfo",  # the first alarm with a timezone imports it (feeds/alarm.py)
)  # fmt: skip
PROBE = (
    "import json, sys\n"
    "import squall.cli.main, squall.cli.standalone, squall.system, squall.providers\n"
    "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
)


def loaded(source: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, cwd=ROOT, timeout=60,
        check=True,
    )  # fmt: skip
    return set(json.loads(done.stdout))


def test_the_standalone_server_loads_no_client_it_does_not_use() -> None:
    # Given a fresh interpreter / When it imports what `squall standalone` runs
    packages = loaded(PROBE)
    # Then the server's own stack is there, the other shapes' clients are not
    assert {"squall", "uvicorn", "starlette", "msgspec"} <= packages
    assert packages.isdisjoint(NOT_IN_STANDALONE), packages & set(NOT_IN_STANDALONE)


def test_the_sandbox_supervisor_loads_no_module_for_its_failure_paths() -> None:
    # Given the supervisor's script as its launcher runs it (``python -I -S pid1.py``: the
    # launcher and its fork, pid 1, hold what it imports for the invoker's whole life)
    probe = (
        "import json, runpy, sys\n"
        "runpy.run_path(sys.argv[1], run_name='pid1')\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(ROOT / "squall/sandbox/pid1.py")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    modules = set(json.loads(done.stdout))
    # Then it has what it serves with, and not traceback (with linecache and tokenize,
    # ~0.45 MiB): that is imported only when a spawn or pid 1 fails
    assert {"ctypes", "socket", "selectors"} <= modules
    assert "traceback" not in modules and "tokenize" not in modules
