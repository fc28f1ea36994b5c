"""Real services for the cluster tests, each one the test's own so it may be broken:

- :class:`NatsServer`: a private ``nats-server -js`` on a free loopback port with its own
  store directory (the machine's server is shared; this one can be stopped and started).
- :class:`TcpProxy`: a loopback TCP relay in front of the machine's PostgreSQL; ``cut()``
  refuses and drops every connection, as a stopped server does for its clients, and
  ``restore()`` lets them through again — the database itself is shared and stays up.
- :class:`Witness`: a loopback HTTP server that actions tell their activation id when they
  start, so a test can see whether any activation ran twice.
- :func:`postgres_schema`: a fresh schema in database ``test``, dropped afterwards.

Every service is reached over a real connection; with ``CI=true`` a missing one fails
the tests (``require``) instead of skipping them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from squall.cli.local_cluster import LocalCluster

LOOPBACK = "127.0.0.1"
PG_HOST, PG_PORT = LOOPBACK, 5432
NATS_PORT = 4222


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def require(what: str, ok: bool) -> None:
    """Skip locally, fail in CI, when a service the tests need is missing."""
    if ok:
        return
    message = f"{what} is not available"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: service-backed tests never skip)")
    pytest.skip(message)


@contextlib.contextmanager
def postgres_schema(dsn: str = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test") -> Iterator[str]:
    """A store URL whose connections use a fresh schema of their own."""
    import psycopg

    schema = f"squall_cluster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


class NatsServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.store = workdir / "nats"
        self.log = workdir / "nats.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "-js", "-a", LOOPBACK, "-p", str(self.port), "-sd", str(self.store)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 15
        while not reachable(LOOPBACK, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class TcpProxy:
    """Relays loopback connections to ``target``; ``cut`` drops them all and refuses
    new ones until ``restore``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen(128)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._sockets.difference_update((source, sink))

    def cut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self.cut()


class Witness:
    """Counts ``POST /<activation id>`` calls: one per run of an action."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        lock = threading.Lock()
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with lock:
                    calls[self.path.strip("/")] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Cluster:
    """The running cluster and the services it was given."""

    local: LocalCluster
    nats: NatsServer
    pg: TcpProxy
    witness: Witness

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
    """Delete the JetStream streams a test created on a shared server (by their prefix)."""
    import asyncio

    import nats

    async def run() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            for info in await js.streams_info():
                if info.config.name and info.config.name.startswith(prefix):
                    await js.delete_stream(info.config.name)
        finally:
            await nc.close()

    asyncio.run(run())
