"""Real services for the cluster tests, each one the test's own so it may be broken:

- :class:`NatsServer`: a private ``nats-server -js`` on a free loopback port with its own
  store directory (the machine's server is shared; this one can be stopped and started).
- :class:`PrivatePostgres`: a PostgreSQL server of the test's own (initdb'd in a second),
  which a test stops and starts again.
- :class:`Witness` (``tests/netsupport.py``): an HTTP server on the test's outside host
  that actions tell their activation id when they start, so a test can see whether any
  activation ran twice.
- :func:`postgres_schema`: a fresh schema in the machine's database ``test``, dropped
  afterwards (for tests that need no outage).
- :func:`shared_services` and :func:`cluster_up`: ``squall cluster up`` as a user runs
  it, on the machine's PostgreSQL and NATS (a schema and a stream prefix of its own).
- :func:`running_cluster`: all of the above started together (the cluster tests' module
  fixture, and ``bench/crash_recovery.py``).

Every service is reached over a real connection; with ``CI=true`` a missing one fails
the tests (``require``) instead of skipping them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from _postgres import PG_HOST, PG_PORT, fresh_schema
from _required import reachable, require
from _standalone import free_port
from netsupport import OutsideHost, Witness

from squall.cli.local_cluster import LocalCluster

LOOPBACK = "127.0.0.1"
NATS_PORT = 4222
#: Health timings shortened (pings every 0.5 s, offline after 4 s) so that a killed
#: invoker is noticed quickly; limits raised so that load never meets a throttle.
CLUSTER_ENV = {
    "SQUALL_PING_INTERVAL_S": "0.5",
    "SQUALL_UNRESPONSIVE_AFTER_S": "2",
    "SQUALL_OFFLINE_AFTER_S": "4",
    "SQUALL_LOST_AFTER_S": "12",
    "SQUALL_STEM_CELLS": "nodejs:20@256x1",
    "SQUALL_USER_MEMORY_MB": "4096",
    "SQUALL_INVOCATIONS_PER_MINUTE": "100000",
    "SQUALL_CONCURRENT_INVOCATIONS": "10000",
    "SQUALL_FIRES_PER_MINUTE": "100000",
    "SQUALL_LOG_LEVEL": "info",
}
__all__ = ["PG_HOST", "PG_PORT", "reachable", "require"]


def postgres_schema() -> contextlib.AbstractContextManager[str]:
    """A fresh schema in the machine's database ``test`` for a store URL's search_path."""
    return fresh_schema("squall_cluster", create=True)


class NatsServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.store = workdir / "nats"
        self.log = workdir / "nats.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @staticmethod
    def binary() -> str:
        return shutil.which("nats-server") or "/usr/sbin/nats-server"

    @staticmethod
    def available() -> bool:
        return Path(NatsServer.binary()).exists()

    def start(self) -> None:
        binary = self.binary()
        # Only this start's lines: a restart appends to the same log.
        start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "-js", "-a", LOOPBACK, "-p", str(self.port), "-sd", str(self.store)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        # Ready when *this* server says so: the port answering is not enough, as another
        # process may have taken the free port first (this one then exits, and the
        # members would use someone else's server).
        deadline = time.monotonic() + 15
        while b"Server is ready" not in self.log.read_bytes()[start:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start: {self.log.read_text()}")
            time.sleep(0.05)
        assert reachable(LOOPBACK, self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A PostgreSQL server of the test's own (Debian's binaries, run as the ``postgres``
    user, trust auth on loopback, ``fsync`` off), so a test may stop it and start it again;
    the machine's server is shared and stays up."""

    def __init__(self) -> None:
        # Not under pytest's root-only temporary directory: the server runs as postgres.
        self.dir = Path(tempfile.mkdtemp(prefix="squall-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()

    @staticmethod
    def available() -> bool:
        return (PG_BIN / "initdb").exists() and shutil.which("runuser") is not None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stderr}{done.stdout}\n{log}")

    def init(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                  "postgres", "--no-sync", "-E", "UTF8")  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses={LOOPBACK} -c fsync=off"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
                  "-w", "-o", options, "start")  # fmt: skip

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Cluster:
    """The running cluster and the services it was given."""

    local: LocalCluster
    nats: NatsServer
    pg: PrivatePostgres
    witness: Witness
    outside: OutsideHost

    @property
    def auth(self) -> tuple[str, str]:
        uuid, _, key = self.local.auth.partition(":")
        return uuid, key

    def client(self, controller: int = 0, timeout: float = 70.0) -> httpx.Client:
        url = self.local.controllers[controller].url
        return httpx.Client(base_url=url, auth=self.auth, timeout=timeout, trust_env=False)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.local.tail(name, 40)}" for name in self.local.members)


def delete_streams(url: str, prefix: str) -> None:
    """Delete the JetStream streams a test created on a shared server (its prefix's)."""
    import asyncio

    from squall.bus.nats import NatsBus

    async def run() -> None:
        bus = await NatsBus.connect(url, prefix=prefix)
        try:
            await bus.delete_streams()
        finally:
            await bus.close()

    asyncio.run(run())


@contextlib.contextmanager
def running_cluster(
    home: Path, outside: OutsideHost, env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """Two controllers and two invokers (:data:`CLUSTER_ENV`, then ``env``) over a private
    PostgreSQL and a private NATS, with a witness on ``outside``; all stopped on exit."""
    require("PostgreSQL's server binaries (Debian package postgresql)", PrivatePostgres.available())
    require("nats-server (Debian package nats-server)", NatsServer.available())
    home.mkdir(parents=True, exist_ok=True)
    nats = NatsServer(home)
    pg = PrivatePostgres()
    witness = Witness(outside)
    try:
        nats.start()
        pg.init()
        pg.start()
        local = LocalCluster(
            home,
            store_url=pg.url,
            bus_url=f"{nats.url}?ack_wait_s=5",
            controllers=2,
            invokers=2,
            # Sandboxes resolve names with the outside host's resolver: no query leaves.
            env={**CLUSTER_ENV, **(env or {}), "SQUALL_SANDBOX_DNS": outside.resolver or ""},
        )
        try:
            local.start()
            yield Cluster(local, nats, pg, witness, outside)
        finally:
            local.close()
    finally:
        nats.stop()
        pg.close()
        witness.close()


def recovered(cluster: Cluster) -> dict[str, float]:
    """``squall_controller_recovered_activations_total`` by outcome, summed over the
    running controllers."""
    totals: dict[str, float] = {"requeued": 0.0, "moved": 0.0, "lost": 0.0}
    for member in cluster.local.controllers:
        if not member.running:
            continue
        page = httpx.get(f"{member.url}/metrics", timeout=5, trust_env=False).text
        for line in page.splitlines():
            if line.startswith("squall_controller_recovered_activations_total{"):
                outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
                totals[outcome] += float(line.rsplit(" ", 1)[1])
    return totals


@contextlib.contextmanager
def shared_services() -> Iterator[tuple[str, str]]:
    """A store URL (a fresh schema of the machine's database ``test``) and a bus URL (a
    stream prefix of its own on the machine's NATS); on exit, after the caller stopped
    what used them, the schema is dropped and the streams deleted."""
    require(f"PostgreSQL on {PG_HOST}:{PG_PORT}", reachable(PG_HOST, PG_PORT))
    require(f"NATS on {LOOPBACK}:{NATS_PORT}", reachable(LOOPBACK, NATS_PORT))
    prefix = f"t{uuid.uuid4().hex[:8]}"
    with postgres_schema() as schema:
        store = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test?options=-csearch_path%3D{schema}"
        try:
            yield store, f"nats://{LOOPBACK}:{NATS_PORT}?prefix={prefix}"
        finally:
            delete_streams(f"nats://{LOOPBACK}:{NATS_PORT}", prefix)


def cluster_up(
    home: Path, out_path: Path, store: str, bus: str, *args: str, quick_offline: bool = True
) -> subprocess.Popen[bytes]:
    """``squall cluster up --store STORE --bus BUS --home HOME ARGS``, its output in
    ``out_path``, with pings every 0.5 s and no stem cells; ``quick_offline``: a silent
    invoker is offline after 4 s (else after the default)."""
    env = {**os.environ, "SQUALL_PING_INTERVAL_S": "0.5", "SQUALL_STEM_CELLS": ""}
    if quick_offline:
        env.update(SQUALL_UNRESPONSIVE_AFTER_S="2", SQUALL_OFFLINE_AFTER_S="4")
    with open(out_path, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "squall.cli.main", "cluster", "up", "--store", store,
             "--bus", bus, "--home", str(home), *args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip


def sandbox_cpu_files(pid: int) -> list[Path]:
    """The CPU quota files of the cgroup that holds invoker ``pid``'s sandboxes (the
    parent of its sandbox supervisor's cgroup, found through its processes): v1
    ``cpu.cfs_quota_us``, v2 ``cpu.max``. Empty when the invoker runs no isolated
    sandboxes or the host has no CPU controller."""
    from squall.sandbox.cgrouptree import detect

    hierarchy = detect()
    if not hierarchy.cpu:
        return []
    found: list[Path] = []
    for child in _descendants(pid):
        try:
            lines = Path(f"/proc/{child}/cgroup").read_text().splitlines()
        except OSError:
            continue  # it exited meanwhile
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if hierarchy.version == 1 and "cpu" in controllers.split(","):
                quota = hierarchy.mounts["cpu"] / path.lstrip("/")
                quota = quota.parent / "cpu.cfs_quota_us"
            elif hierarchy.version == 2 and controllers == "":
                quota = hierarchy.mounts["unified"] / path.lstrip("/")
                quota = quota.parent / "cpu.max"
            else:
                continue
            if quota.parent.name != "" and quota.exists() and quota not in found:
                found.append(quota)
    return found


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                children = [int(c) for c in (task / "children").read_text().split()]
                out += children
                todo += children
    return out


@contextlib.contextmanager
def cpu_starved(quota_files: list[Path]) -> Iterator[None]:
    """Give the cgroups of ``quota_files`` 0.1 % of one CPU (1 ms per second), so that no
    runtime in them starts within the factory's start timeout — a machine far beyond
    loaded, on demand — and put their limits back on the way out."""
    # v1 keeps the period in a file of its own; v2 writes "quota period" to cpu.max.
    limits = {f: "1000 1000000" if f.name == "cpu.max" else "1000" for f in quota_files}
    limits.update({f.parent / "cpu.cfs_period_us": "1000000"
                   for f in quota_files if f.name != "cpu.max"})  # fmt: skip
    # Written in this order, put back in the reverse one (v1 checks quota against period).
    order = sorted(limits, key=lambda f: f.name != "cpu.cfs_period_us")
    saved = {f: f.read_text().strip() for f in order}
    try:
        for f in order:
            f.write_text(limits[f])
        yield
    finally:
        for f in reversed(order):
            with contextlib.suppress(OSError):
                f.write_text(saved[f])
