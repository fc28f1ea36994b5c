"""PostgreSQL for the store's own tests: a fresh schema per test, and a loopback relay
that can be cut to play an outage without touching the machine's shared server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Iterator

import psycopg
from _required import unavailable

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"


def require_postgres() -> None:
    """Skip locally, fail with CI=true, when PostgreSQL is not reachable."""
    with contextlib.suppress(OSError), socket.create_connection((PG_HOST, PG_PORT), timeout=1):
        return
    unavailable(f"PostgreSQL on {PG_HOST}:{PG_PORT} is not available")


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """The name of a schema nobody uses, dropped (if it was created) afterwards."""
    schema = f"squall_test_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Relay:
    """Relays ``127.0.0.1:<port>`` to the PostgreSQL server. ``cut()`` stops listening
    and drops every relayed connection, as a stopped server does to its clients;
    ``restore()`` listens again on the same port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in self._transports:
            transport.abort()
        self._transports.clear()

    async def close(self) -> None:
        await self.cut()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(PG_HOST, PG_PORT)
        except OSError:
            writer.transport.abort()
            return
        self._transports |= {writer.transport, up_writer.transport}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()
