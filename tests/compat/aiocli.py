"""Adobe's ``aio`` CLI (npm ``@adobe/aio-cli``, which bundles the ``rt:`` runtime plugin),
installed once per version into a cache directory outside the repository and run against a
Squall server the way the seed document runs it against Adobe I/O Runtime.

- The install goes to ``$XDG_CACHE_HOME/squall-tests/aio-cli/<version>`` (default
  ``~/.cache``), so it survives between runs and checkouts. An exclusive ``flock`` on a
  lock file beside it makes concurrent test runs wait for one install instead of racing;
  a ``.installed`` marker, written last, tells a finished install from an interrupted one
  (which is wiped and redone).
- npm runs with this process's environment (it may need a proxy to reach the registry);
  ``aio`` runs with :func:`_standalone.clean_env` (loopback only), a throw-away ``HOME`` and
  XDG directories (so no user configuration leaks in or out), ``CI=true``, telemetry off
  and stdin closed: it can never stop at a prompt.
- Without node or npm the tests skip locally and fail in CI (``CI=true``). A failed install
  always fails, with npm's output: the network being down must not pass as a skip.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from _required import unavailable
from _standalone import clean_env

#: Pinned: a new aio release must not change what the tests run without a commit.
AIO_CLI_VERSION = "11.1.2"
INSTALL_DEADLINE_S = 900.0
COMMAND_DEADLINE_S = 120.0


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "squall-tests" / "aio-cli" / AIO_CLI_VERSION


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        problem = f"{tool} is not installed (apt-get install nodejs npm); the aio tests need it"
        unavailable(problem)
    return found


def install() -> Path:
    """The ``aio`` executable of the pinned version, installing it first if needed."""
    _require("node")
    npm = _require("npm")
    target = cache_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    executable = target / "node_modules" / "@adobe" / "aio-cli" / "bin" / "run"
    marker = target / ".installed"
    with open(target.parent / f"{AIO_CLI_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not marker.exists():
            shutil.rmtree(target, ignore_errors=True)  # an interrupted install
            target.mkdir(parents=True)
            (target / "package.json").write_text('{"name": "aio-cli-cache", "private": true}\n')
            try:
                done = subprocess.run(
                    [
                        npm,
                        "install",
                        "--no-audit",
                        "--no-fund",
                        "--loglevel=error",
                        f"@adobe/aio-cli@{AIO_CLI_VERSION}",
                    ],
                    cwd=target,
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_DEADLINE_S,
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"npm install @adobe/aio-cli@{AIO_CLI_VERSION} into {target} did not "
                    f"finish within {INSTALL_DEADLINE_S} s (is the npm registry reachable?)"
                )
            if done.returncode != 0 or not executable.exists():
                pytest.fail(
                    f"npm install @adobe/aio-cli@{AIO_CLI_VERSION} into {target} failed "
                    f"(exit {done.returncode}; is the npm registry reachable?):\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                )
            marker.write_text(AIO_CLI_VERSION + "\n")
    return executable


class Server(Protocol):
    """What ``aio`` is pointed at: a standalone, or a cluster's controller."""

    @property
    def api_host(self) -> str: ...
    @property
    def auth(self) -> str: ...
    @property
    def namespace(self) -> str: ...

    def log(self) -> str: ...


@dataclass
class Aio:
    """Runs ``aio`` commands against one server as its guest namespace."""

    executable: Path
    server: Server
    home: Path

    def env(self) -> dict[str, str]:
        home = self.home
        return clean_env(
            {
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_DATA_HOME": str(home / ".local" / "share"),
                "XDG_CACHE_HOME": str(home / ".cache"),
                "CI": "true",
                "AIO_TELEMETRY_DISABLED": "true",
                # The seed's configuration, pointed at Squall instead of Adobe I/O Runtime.
                "AIO_RUNTIME_APIHOST": self.server.api_host,
                "AIO_RUNTIME_AUTH": self.server.auth,
                "AIO_RUNTIME_NAMESPACE": self.server.namespace,
                # Create and delete straight to the API host, not Adobe's deploy service.
                "USE_RUNTIME_AUTH": "true",
                "NO_COLOR": "1",
                "FORCE_COLOR": "0",
            }
        )

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``aio ARGS...``; fails the test (with both outputs) on a non-zero exit. Run by
        node directly: no npx, no PATH lookup of a globally installed aio."""
        node = _require("node")
        done = subprocess.run(
            [node, str(self.executable), *args],
            cwd=cwd or self.home,
            env=self.env(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=COMMAND_DEADLINE_S,
            check=False,
        )
        assert done.returncode == 0, (
            f"aio {' '.join(args)} exited with {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\nserver:\n{self.server.log()}"
        )
        return done
