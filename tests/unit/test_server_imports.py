"""What a standalone server loads: none of the clients only other shapes or routes use.

Each module is memory the server holds for its whole life (bench/README.md,
"memory_at_concurrency.py": NATS's client and aiohttp, the Docker client, httpx with
rich and pygments, pyroute2 cost it ~22 MiB together). They are imported where they are
used: the cluster's providers, the Docker backend's first connection, the log
forwarder's first batch, the PostgreSQL store; the sandbox network speaks rtnetlink
itself (squall/sandbox/rtnl.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_IN_STANDALONE = (
    "nats", "aiohttp", "aiodocker", "httpx", "rich", "pygments", "psycopg", "pyroute2",
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
