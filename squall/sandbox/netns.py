"""TCP connections made inside another network namespace.

A Docker container of Squall's runs with network mode ``none``: it publishes no port, and
the runtime's port 8080 listens on the container's own loopback only. The invoker still
reaches it: a socket belongs to the network namespace it was *created* in, so a socket
made while the creating thread has entered the container's namespace (``setns``) connects
to that namespace's ``127.0.0.1:8080``, even after the thread went back. Nothing on the
host or in another container can connect to it.

:class:`NamespaceConnector` holds a descriptor of one namespace (so a reused pid can never
redirect it) and makes such sockets on a worker thread of its own: ``setns`` acts on the
calling thread only, and never on the event loop's.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
from concurrent.futures import ThreadPoolExecutor

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
#: One thread for every namespace: making a socket takes microseconds.
_executor = ThreadPoolExecutor(1, thread_name_prefix="squall-netns")


def _socket_in(namespace_fd: int) -> socket.socket:
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(namespace_fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the container's network")
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - cannot fail
                os.abort()  # a worker thread stuck in a container's namespace
    finally:
        os.close(own)
    sock.setblocking(False)
    return sock


class NamespaceConnector:
    """Opens TCP connections to ``127.0.0.1:port`` in the network namespace of ``pid``
    (taken when constructed). :meth:`close` releases the namespace."""

    def __init__(self, pid: int, port: int) -> None:
        self.port = port
        self._fd: int | None = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    async def connect(self, limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connected stream pair; OSError when nothing listens (or after close)."""
        if self._fd is None:
            raise OSError("the container's network namespace was released")
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(_executor, _socket_in, self._fd)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", self.port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, limit=limit)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
