"""What ``invoker_bench.py`` (B2) and ``cold_api.py`` share: a ``squall standalone`` of a
given tree (:func:`standalone`), the API client, the no-op actions, and B2's cold sample
(:func:`cold_sample`: a fresh action, 0.4 s of quiet, its first invoke, then warm ones).

Not a benchmark of its own.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from invoke_latency import (  # noqa: E402
    REPO,
    UNTHROTTLED,
    clean_env,
    free_port,
    read_wskprops,
    wait_answering,
)
from trigger_latency import Api as _Api  # noqa: E402


class Api(_Api):
    """trigger_latency's client, reconnecting once when the server closed an idle socket."""

    def call(self, method: str, path: str, body: Any = None, **query: str) -> tuple[int, Any]:
        try:
            return super().call(method, path, body, **query)
        except (ConnectionError, http.client.HTTPException):
            self._conn.close()
            return super().call(method, path, body, **query)


CODE = {
    "nodejs": ("nodejs:default", "function main() { return {}; }"),
    "python": ("python:default", "def main(args):\n    return {}\n"),
}
#: B2's pause before a cold invoke: the stem cell or zygote spare taken last is back.
QUIET_S = 0.4


@dataclass(frozen=True)
class Server:
    """A running ``squall standalone``: where it answers, its key, its home and its pid."""

    apihost: str
    auth: str
    home: Path
    pid: int


@contextlib.contextmanager
def standalone(
    extra_env: dict[str, str],
    tree: Path = REPO,
    entry: list[str] | None = None,
) -> Iterator[Server]:
    """A ``squall standalone`` of our own on loopback (temporary home, throttles and the
    invoker's memory out of the way, keep-warm 600 s), running ``tree``'s code (another
    version's, for ``--before``) through ``entry`` (default ``-m squall.cli.main``; a
    ``-c`` script that patches something then calls ``squall.cli.main.main``); SIGTERM at
    exit (a script's ``atexit`` hooks run then)."""
    with tempfile.TemporaryDirectory(prefix="squall-b2-") as tmp:
        home = Path(tmp) / "home"
        port = free_port()
        apihost = f"http://127.0.0.1:{port}"
        log_path = Path(tmp) / "server.log"
        args = [sys.executable, *(entry or ["-m", "squall.cli.main"])]
        args += ["standalone", "--host", "127.0.0.1", "--port", str(port)]
        args += ["--home", str(home), "--keep-warm", "600", "--log-level", "warning"]
        env = clean_env({**UNTHROTTLED, "SQUALL_USER_MEMORY_MB": "65536", **extra_env})
        if tree != REPO:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=tree,
            )  # fmt: skip
        try:
            wait_answering(process, apihost, log_path)
            time.sleep(1.0)  # let the stem cells start
            auth = read_wskprops(home / "wskprops")["AUTH"]
            yield Server(apihost, auth, home, process.pid)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def create(api: Api, name: str, family: str, memory: int = 256) -> None:
    kind, code = CODE[family]
    api.ok("PUT", f"/actions/{name}", {"exec": {"kind": kind, "code": code},
                                       "limits": {"memory": memory}}, overwrite="true")  # fmt: skip


def annotation(record: dict[str, Any], key: str) -> Any:
    return next((a["value"] for a in record.get("annotations", []) if a["key"] == key), None)


def timed_invoke(api: Api, name: str) -> tuple[float, dict[str, Any]]:
    """A blocking invoke: (RTT ms, its record)."""
    t0 = time.perf_counter()
    record = api.ok("POST", f"/actions/{name}", {}, blocking="true")
    return (time.perf_counter() - t0) * 1000, record


def warm_up(api: Api, memories: tuple[int, ...] = (128, 256)) -> int:
    """Warm the HTTP path and start the zygote (on its first fork): 10 invokes of an action
    per family and size. Returns how many invokes."""
    invokes = 0
    for family in CODE:
        for memory in memories:
            name = f"b2-warm-{family}-{memory}"
            create(api, name, family, memory)
            for _ in range(10):
                timed_invoke(api, name)
                invokes += 1
    return invokes


@dataclass(frozen=True)
class ColdSample:
    """One B2 sample: the cold RTT, the warm RTTs just after (ms), the cold record."""

    cold: float
    warms: list[float]
    record: dict[str, Any]

    @property
    def warm(self) -> float:
        return statistics.median(self.warms)


def cold_sample(api: Api, name: str, family: str, memory: int, warm: int = 5) -> ColdSample:
    """B2's sample: ``name`` created fresh, :data:`QUIET_S` of quiet, its first (cold)
    invoke, then ``warm`` invokes one after another; exits when the cold one failed."""
    create(api, name, family, memory)
    time.sleep(QUIET_S)
    cold, record = timed_invoke(api, name)
    if record["response"]["status"] != "success":
        raise SystemExit(f"{name}: {record['response']}")
    return ColdSample(cold, [timed_invoke(api, name)[0] for _ in range(warm)], record)
