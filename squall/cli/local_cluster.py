"""A cluster of controller and invoker processes on this machine (``squall cluster up``,
and the cluster tests): start them, wait until they serve, kill or restart one, stop all.

Every member is a ``python -m squall.cli.main controller|invoker`` subprocess configured
through ``SQUALL_*`` variables, with its output in ``HOME/logs/<name>.log``. Invokers get
homes of their own (each sandbox factory locks its containers directory). The guest
namespace is created in the store before the controllers start, and its credentials are
written to ``HOME/wskprops`` with the first controller as ``APIHOST``.

The invokers share one action-key secret (``SQUALL_ACTION_KEY_SECRET``, see
:mod:`squall.invoker.apikeys`): the one in the environment, else the owner-only file
``HOME/action-key.secret``, created on the first ``up`` and kept, so that action keys
minted by an earlier run of the cluster stay valid. The controllers get it too: they sign
dashboard sessions with a key derived from it, so each accepts the others' sessions.

Every start of a member gets a fresh token (``SQUALL_START_TOKEN``) that its ``/ping``
returns with its pid: a member is ready only when the process started here answers on its
port, not merely when something does (another server may hold the port). ``start`` checks
first that the controllers' ports are free, and fails with a message saying which one is
taken. :class:`~squall.cli.supervisor.Supervisor` keeps the members up after ``start``.

Every member also gets the same parameter key (``SQUALL_PARAMETER_KEY``, see
:mod:`squall.store.encryption`): the one in the environment, else ``HOME/parameter.key``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from squall.config import Settings
from squall.invoker.apikeys import SECRET_FILE, secret_file
from squall.metrics.supervisor import save_restarts
from squall.store.encryption import KEY_FILE, encode_key, ensure_key_file, read_key_file

START_TIMEOUT_S = 60.0
#: The supervisor's restart counts (metrics/supervisor.py), under HOME.
SUPERVISOR_FILE = "supervisor.json"


class ClusterStartError(RuntimeError):
    """A member could not be started or never answered; the message says which and why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now (as uvicorn does: with
    SO_REUSEADDR, so a port left in TIME_WAIT by an earlier run counts as free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


@dataclass
class Member:
    name: str
    role: str  # "controller" or "invoker"
    env: dict[str, str] = field(repr=False)  # holds the action-key secret
    log_path: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # This start's nonce (SQUALL_START_TOKEN), returned by the member's /ping.
    token: str = field(default="", repr=False)
    started_at: float = 0.0  # time.monotonic() of the last spawn

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


async def _guest(settings: Settings, wskprops: Path, api_host: str) -> str:
    from squall.cli.standalone import GUEST, guest_credentials, write_wskprops
    from squall.store.factory import open_store

    store = await open_store(settings)
    try:
        auth = await guest_credentials(store.auth, wskprops)
    finally:
        await store.close()
    write_wskprops(wskprops, api_host, auth, GUEST)
    return auth


class LocalCluster:
    def __init__(
        self,
        home: Path,
        *,
        store_url: str,
        bus_url: str,
        controllers: int = 2,
        invokers: int = 2,
        base_port: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = home
        self.store_url = store_url
        self.bus_url = bus_url
        self.members: dict[str, Member] = {}
        self.auth = ""
        common = {
            **os.environ,
            "SQUALL_STORE_URL": store_url,
            "SQUALL_BUS_URL": bus_url,
            "SQUALL_CLUSTER_CONTROLLERS": str(controllers),
            "SQUALL_SUPERVISOR_FILE": str(home / SUPERVISOR_FILE),
            **(env or {}),
        }
        (home / "logs").mkdir(parents=True, exist_ok=True)
        ports = [base_port + i if base_port else free_port() for i in range(controllers)]
        self.api_host = common.get("SQUALL_API_HOST") or f"http://127.0.0.1:{ports[0]}"
        common["SQUALL_API_HOST"] = self.api_host
        secret = common.get("SQUALL_ACTION_KEY_SECRET") or (
            secret_file(home / SECRET_FILE).decode("utf-8")
        )
        # Every member encrypts and decrypts parameters with the same key: the cluster
        # home's parameter.key (made on the first `up`), unless one is given.
        if not common.get("SQUALL_PARAMETER_KEY"):
            ensure_key_file(home / KEY_FILE)
            keys = read_key_file(home / KEY_FILE)
            common["SQUALL_PARAMETER_KEY"] = encode_key(keys.current)
            common["SQUALL_PARAMETER_KEY_PREVIOUS"] = ",".join(map(encode_key, keys.previous))
        for i, port in enumerate(ports):
            name = f"controller{i}"
            self.members[name] = Member(
                name,
                "controller",
                {
                    **common,
                    # Controllers sign dashboard sessions with it: each accepts the others'.
                    "SQUALL_ACTION_KEY_SECRET": secret,
                    "SQUALL_CONTROLLER_ID": str(i),
                    "SQUALL_PORT": str(port),
                    "SQUALL_HOME": str(home / name),
                },
                home / "logs" / f"{name}.log",
                port,
            )
        for i in range(invokers):
            name = f"invoker{i}"
            port = free_port()
            self.members[name] = Member(
                name,
                "invoker",
                {
                    **common,
                    "SQUALL_ACTION_KEY_SECRET": secret,
                    "SQUALL_INVOKER_ID": str(i),
                    "SQUALL_HOME": str(home / name),
                },
                home / "logs" / f"{name}.log",
                port,
            )

    # -- lifecycle ------------------------------------------------------------------

    @property
    def controllers(self) -> list[Member]:
        return [m for m in self.members.values() if m.role == "controller"]

    @property
    def invokers(self) -> list[Member]:
        return [m for m in self.members.values() if m.role == "invoker"]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Create the guest, start every member, wait until all invokers are healthy."""
        settings = Settings.from_env(
            {"SQUALL_STORE_URL": self.store_url, "SQUALL_HOME": str(self.home)}
        )
        for member in self.controllers:
            if not port_free(member.port):
                raise ClusterStartError(
                    f"{member.name} cannot listen on 127.0.0.1:{member.port}: another process "
                    f"holds the port. Stop it, or give cluster up another --port."
                )
        self.auth = asyncio.run(_guest(settings, self.home / "wskprops", self.api_host))
        save_restarts(self.home / SUPERVISOR_FILE, {})  # counted from this start on
        for member in self.members.values():
            self.spawn(member.name)
        self.wait_ready(timeout_s, starting=True)

    def spawn(self, name: str) -> Member:
        member = self.members[name]
        if member.running:
            raise RuntimeError(f"{name} is running")
        args = [sys.executable, "-m", "squall.cli.main", member.role]
        if member.role == "invoker":
            args += ["--port", str(member.port)]
        member.token = secrets.token_hex(16)
        with open(member.log_path, "ab") as log:
            member.process = subprocess.Popen(
                args, env={**member.env, "SQUALL_START_TOKEN": member.token}, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        member.started_at = time.monotonic()
        return member

    def answers(self, name: str) -> bool | None:
        """True when the process started last as ``name`` answers its /ping (its token
        and pid), False when something else answers on its port, None when nothing does."""
        member = self.members[name]
        try:
            pong = httpx.get(f"{member.url}/ping", timeout=2, trust_env=False).json()
        except (httpx.HTTPError, ValueError):
            return None
        process = member.process
        return (
            isinstance(pong, dict)
            and process is not None
            and pong.get("start") == member.token
            and pong.get("pid") == process.pid
        )

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S, *, starting: bool = False) -> None:
        """Until every running member answers as itself (/ping: its start token and pid)
        and every running controller sees every running invoker healthy. ``starting``:
        a member that exited at all is an error (else one killed on purpose is skipped)."""
        deadline = time.monotonic() + timeout_s
        for member in self.members.values():
            foreign = False
            while member.running:
                self._check_alive(starting)
                answer = self.answers(member.name)
                if answer:
                    break
                foreign = foreign or answer is False
                if time.monotonic() > deadline:
                    why = (f"another server answers on 127.0.0.1:{member.port}" if foreign
                           else "it never answered")  # fmt: skip
                    raise ClusterStartError(f"{member.name} is not ready: {why}. "
                                            f"{self.tail(member.name)}")  # fmt: skip
                time.sleep(0.1)
            self._check_alive(starting)
        wanted = {m.name for m in self.invokers if m.running}  # /invokers names them alike
        for member in self.controllers:
            if not member.running:
                continue
            while True:
                self._check_alive(starting)
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    states = httpx.get(f"{member.url}/invokers", timeout=2).json()
                    if all(states.get(name) == "up" for name in wanted):
                        break
                if time.monotonic() > deadline:
                    raise ClusterStartError(f"{member.name} did not see {sorted(wanted)} up: "
                                            f"{self.tail(member.name)}")  # fmt: skip
                time.sleep(0.2)

    def _check_alive(self, starting: bool = False) -> None:
        for member in self.members.values():
            if member.process is not None and member.process.poll() is not None:
                code = member.process.returncode
                if starting or code not in (0, -signal.SIGKILL, -signal.SIGTERM):
                    raise ClusterStartError(f"{member.name} exited with {code}: "
                                            f"{self.tail(member.name)}")  # fmt: skip

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        member = self.members[name]
        if member.process is not None and member.process.poll() is None:
            os.killpg(member.process.pid, sig)
            member.process.wait(30)

    def stop(self, name: str, timeout_s: float = 30.0) -> int | None:
        member = self.members[name]
        if member.process is None or member.process.poll() is not None:
            return None if member.process is None else member.process.returncode
        member.process.send_signal(signal.SIGTERM)
        try:
            return member.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill(name)
            return member.process.returncode

    def restart(self, name: str) -> Member:
        self.stop(name)
        return self.spawn(name)

    def close(self) -> None:
        # Controllers first: they stop taking requests; invokers finish what they run.
        for member in [*self.controllers, *self.invokers]:
            self.stop(member.name)

    # -- reading --------------------------------------------------------------------

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            text = self.members[name].log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> list[str]:
        out = [f"{m.name}: {m.url} (pid {m.process.pid if m.process else '-'})"
               for m in self.members.values()]  # fmt: skip
        out += [f"APIHOST={self.api_host}", f"AUTH={self.auth}", "NAMESPACE=guest",
                f"# written to {self.home / 'wskprops'}"]  # fmt: skip
        return out
