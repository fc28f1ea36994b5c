"""Helpers for the bus contract suite: where NATS is, what to do when it is missing, and a
throwaway ``nats-server`` of a test's own (for the tests that kill and restart it).

The machine's NATS server (``SQUALL_TEST_NATS_URL``, default ``nats://127.0.0.1:4222``)
is shared: tests use it only under a random prefix and delete their streams at the end,
and never restart it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

from _required import reachable as tcp_reachable
from _standalone import free_port

from squall.bus.contracts import Consumer, Delivery

NATS_URL = os.environ.get("SQUALL_TEST_NATS_URL", "nats://127.0.0.1:4222")
# Generous bound for "a message that is there arrives": never reached when things work.
ARRIVES_S = 30.0


async def take(consumer: Consumer, timeout: float = ARRIVES_S) -> Delivery:
    """The next message of ``consumer``, which must come within ``timeout``."""
    delivery = await consumer.poll(timeout)
    assert delivery is not None, "expected a message"
    return delivery


def reachable(url: str) -> bool:
    parsed = urlparse(url)
    return tcp_reachable(parsed.hostname or "127.0.0.1", parsed.port or 4222, timeout=2)


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


def nats_server_binary() -> str | None:
    return shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )


class OwnNatsServer:
    """A ``nats-server -js`` on a free loopback port with its store in ``store_dir``;
    ``kill`` (SIGKILL, no clean shutdown) and ``start`` again keep port and store."""

    def __init__(self, binary: str, store_dir: Path) -> None:
        self.binary = binary
        self.store_dir = store_dir
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, *, jetstream: bool = True) -> None:
        """Start it (without ``jetstream``: a server whose JetStream API nobody answers,
        as one not ready yet)."""
        args = ["-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store_dir)]
        if jetstream:
            args.insert(0, "-js")
        self._process = await asyncio.create_subprocess_exec(
            self.binary, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while not reachable(self.url):
            if self._process.returncode is not None:
                raise RuntimeError(f"nats-server exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("nats-server did not listen within 30 s")
            await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: the server gets no chance to flush or say goodbye."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
        self._process = None
