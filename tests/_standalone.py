"""A real ``squall standalone`` subprocess, for the integration and compatibility tests.

:func:`start` launches ``squall standalone`` on a free loopback port with its own
``--home``, waits (polling with a deadline) until ``GET /api/v1`` answers, and reads the
credentials back from ``HOME/wskprops`` — the file a user would point ``wsk`` at.
:meth:`Standalone.stop` sends SIGTERM, as a service manager would, and waits for the exit
code. :func:`runtime_processes` finds action runtimes (node / python proxies) that still
run for a home directory, so a test can check that shutting down left none behind.

The server's output goes to ``HOME/server.log`` (never a pipe nobody reads, which could
fill up and block the server); it is quoted in every failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

LOOPBACK = "127.0.0.1"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0
#: Environment variables that would send a client's loopback traffic through a proxy.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "proxy")

T = TypeVar("T")


def free_port() -> int:
    """A loopback port nobody listens on right now (the server may still lose a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without proxy settings and without OpenWhisk's
    ``__OW_*`` variables, so children talk to the loopback server and nothing else."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in PROXY_VARIABLES and not k.startswith("__OW_")
    }
    env.update(extra or {})
    return env


def poll(
    probe: Callable[[], T | None], deadline_s: float, interval_s: float = 0.02, what: str = ""
) -> T:
    """Call ``probe`` until it returns something other than None; fail after the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up after {deadline_s} s waiting for {what or probe}")
        time.sleep(interval_s)


def read_wskprops(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


@dataclass(frozen=True)
class RuntimeProcess:
    pid: int
    start_ticks: int
    cmdline: str


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time in clock ticks) of a live pid, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _alive(proc: RuntimeProcess) -> bool:
    stat = _proc_stat(proc.pid)
    # A zombie has exited already; a different start time means the pid was reused.
    return stat is not None and stat[0] != "Z" and stat[2] == proc.start_ticks


def _pids() -> Iterable[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def runtime_processes(home: Path, server_pid: int | None = None) -> list[RuntimeProcess]:
    """Live processes that belong to the containers of ``home``: the descendants of
    ``server_pid`` and any process whose command line, working directory or environment
    names ``HOME/containers`` (a runtime that outlived its parent is reparented, so the
    process tree alone would miss it)."""
    marker = str(home.resolve() / "containers").encode()
    parents: dict[int, int] = {}
    found: dict[int, RuntimeProcess] = {}
    for pid in _pids():
        stat = _proc_stat(pid)
        if stat is None or stat[0] == "Z" or pid in (os.getpid(), server_pid):
            continue
        parents[pid] = stat[1]
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        hit = marker in cmdline
        if not hit:
            with contextlib.suppress(OSError):
                hit = os.readlink(f"/proc/{pid}/cwd").encode().startswith(marker)
        if not hit:
            with contextlib.suppress(OSError):
                hit = marker in Path(f"/proc/{pid}/environ").read_bytes()
        if hit:
            found[pid] = RuntimeProcess(pid, stat[2], cmdline.replace(b"\0", b" ").decode())
    if server_pid is not None:
        for pid in parents:
            ancestor, hops = parents.get(pid), 0
            while ancestor is not None and ancestor != server_pid and hops < 64:
                ancestor, hops = parents.get(ancestor), hops + 1
            if ancestor == server_pid and pid not in found:
                stat = _proc_stat(pid)
                if stat is not None:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    found[pid] = RuntimeProcess(pid, stat[2], cmd.decode(errors="replace"))
    return sorted(found.values(), key=lambda p: p.pid)


@dataclass
class Standalone:
    """A running ``squall standalone``: where it listens and the guest's credentials."""

    api_host: str
    auth: str
    namespace: str
    home: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    #: Runtime processes seen while it ran (checked again after it stopped).
    seen_runtimes: list[RuntimeProcess] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"{self.api_host}/api/v1"

    @property
    def credentials(self) -> tuple[str, str]:
        uuid, _, key = self.auth.partition(":")
        return uuid, key

    def client(self, auth: tuple[str, str] | None = None, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client for ``/api/v1`` authenticated as the guest (or ``auth``)."""
        return httpx.Client(
            base_url=self.api,
            auth=auth or self.credentials,
            timeout=timeout,
            trust_env=False,  # never a proxy: the server is on loopback
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def runtimes(self) -> list[RuntimeProcess]:
        """The runtime processes of this server's containers, now."""
        return runtime_processes(self.home, self.process.pid if self.running() else None)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, deadline_s: float = STOP_DEADLINE_S) -> int:
        """SIGTERM, then wait for the exit code; a server that does not exit in time is
        killed and the test fails."""
        if self.running():
            self.seen_runtimes.extend(runtime_processes(self.home, self.process.pid))
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(deadline_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"squall standalone did not exit within {deadline_s} s of SIGTERM\n{self.log()}"
            ) from None

    def leftover_runtimes(self, deadline_s: float = 2.0) -> list[RuntimeProcess]:
        """Runtime processes still alive after the server exited (a killed process may
        take a moment to disappear, so this waits up to ``deadline_s`` for them to go)."""
        end = time.monotonic() + deadline_s
        while True:
            seen = {p.pid: p for p in self.seen_runtimes}
            for p in runtime_processes(self.home):
                seen.setdefault(p.pid, p)
            alive = [p for p in seen.values() if _alive(p)]
            if not alive or time.monotonic() > end:
                return alive
            time.sleep(0.02)

    def stop_cleanly(self) -> None:
        """Stop, and assert what a clean stop means: exit code 0, no runtime left."""
        code = self.stop()
        assert code == 0, f"squall standalone exited with {code}\n{self.log()}"
        left = self.leftover_runtimes()
        assert not left, f"runtime processes outlived the server: {left}"


#: Starts a server on the given home (see ``start_server`` in tests/integration).
StartServer = Callable[[Path], Standalone]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


# The shared test server serves many tests within a minute: OpenWhisk's default
# throttles (60 invokes/min) would make them depend on each other's pace. Throttles have
# tests of their own with low limits.
TEST_LIMITS = {
    "SQUALL_INVOCATIONS_PER_MINUTE": "100000",
    "SQUALL_CONCURRENT_INVOCATIONS": "10000",
    "SQUALL_FIRES_PER_MINUTE": "100000",
}


def start(
    home: Path,
    *,
    keep_warm_s: float | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> Standalone:
    """Start ``squall standalone`` with ``--home home`` and wait until it answers.

    ``env`` adds to (or overrides) ``TEST_LIMITS`` in the server's environment.

    A port lost to another process between choosing and binding is retried with a fresh
    one (unless ``port`` was given).
    """
    home.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        chosen = port or free_port()
        log_path = home / "server.log"
        args = [
            sys.executable,
            "-m",
            "squall.cli.main",
            "standalone",
            "--host",
            LOOPBACK,
            "--port",
            str(chosen),
            "--home",
            str(home),
        ]
        if keep_warm_s is not None:
            args += ["--keep-warm", str(keep_warm_s)]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=clean_env({**TEST_LIMITS, **(env or {})}),
            )
        api_host = f"http://{LOOPBACK}:{chosen}"
        end = time.monotonic() + START_DEADLINE_S
        while process.poll() is None and time.monotonic() < end:
            if _answers(f"{api_host}/api/v1"):
                break
            time.sleep(0.02)
        if process.poll() is None and _answers(f"{api_host}/api/v1"):
            props = read_wskprops(home / "wskprops")
            # Something else answering on a port we lost in a race would show here.
            assert props.get("APIHOST") == api_host, f"wskprops: {props}"
            return Standalone(
                api_host=props["APIHOST"],
                auth=props["AUTH"],
                namespace=props["NAMESPACE"],
                home=home,
                process=process,
                log_path=log_path,
            )
        if process.poll() is None:
            process.kill()
            process.wait()
            raise AssertionError(
                f"squall standalone did not answer within {START_DEADLINE_S} s\n"
                + log_path.read_text(errors="replace")[-8000:]
            )
        output = log_path.read_text(errors="replace")
        if port is not None or "could not listen" not in output or attempt == 2:
            raise AssertionError(
                f"squall standalone exited with {process.returncode}\n{output[-8000:]}"
            )
    raise AssertionError("unreachable")


def run_admin(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``squall admin --home HOME ARGS`` as an operator runs it next to a server (on its
    SQLite store); with ``ok``, asserts it succeeded."""
    done = subprocess.run(
        [sys.executable, "-m", "squall.cli.main", "admin", "--home", str(home), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=clean_env({"SQUALL_STORE_URL": ""}),
        timeout=60,
        check=False,
    )
    if ok:
        assert done.returncode == 0, f"admin {args}: {done.returncode}\n{done.stderr}"
    return done


def admin(home: Path, *args: str) -> str:
    """What a successful ``squall admin`` printed (see :func:`run_admin`), stripped."""
    return run_admin(home, *args).stdout.strip()
