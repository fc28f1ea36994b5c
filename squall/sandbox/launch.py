"""Plumbing of starting a runtime process: its pipes, its socket, its leftovers.

Used by :mod:`squall.sandbox.process`; kept apart so that the factory reads as policy.

- :class:`RuntimeProtocol` feeds a runtime's stdout and stderr into its log collector and
  notes its exit (event loop thread only).
- :func:`listen` creates the runtime's listening Unix socket *in the invoker*: the runtime
  inherits the listening descriptor (``__OW_LISTEN_FD``), so its sandbox needs no writable
  view of the host's file system, and the invoker connects to the socket's path as usual.
- :func:`wait_ready` waits for the readiness byte on the ``__OW_READY_FD`` pipe.
- :func:`write_pid_file` / :func:`kill_leftover` record each runtime's pid with its start
  time, so that the next invoker on the same directory kills what a crash left behind —
  and never an unrelated process that reused the pid.
- :func:`become_subreaper` / :func:`reap_orphan`: bubblewrap's monitor exits as soon as the
  runtime did, before the sandbox's init is reaped; that init is then orphaned. As the
  "child subreaper" of its descendants, the invoker inherits such orphans instead of the
  host's init (which, in a container without an init system, may never reap them) and
  reaps them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from squall.sandbox.http import MAX_SOCKET_PATH
from squall.sandbox.logs import LogCollector

SOCKET_NAME = "proxy.sock"
PID_FILE = "pid"
PR_SET_CHILD_SUBREAPER = 36
#: How long to wait for an orphaned sandbox init to finish dying before reaping it.
ORPHAN_REAP_SECONDS = 2.0


class RuntimeProtocol(asyncio.SubprocessProtocol):
    """Feeds the runtime's pipes into the log collector and notes its exit (loop thread)."""

    def __init__(self, logs: LogCollector, exited: asyncio.Future[None]) -> None:
        self._logs = logs
        self._exited = exited

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._logs.feed("stdout" if fd == 1 else "stderr", data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in (1, 2):
            self._logs.eof("stdout" if fd == 1 else "stderr")

    def process_exited(self) -> None:
        self._logs.process_exited()
        if not self._exited.done():
            self._exited.set_result(None)


def at_path(op: Callable[[str], None], directory: Path, name: str) -> None:
    """Call ``op`` (a Unix socket's ``bind`` or ``connect``) with ``directory/name``, of
    any length: one too long for sun_path goes through a descriptor of the directory."""
    path = directory / name
    if len(os.fsencode(str(path))) <= MAX_SOCKET_PATH:
        op(str(path))
        return
    dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    try:
        op(f"/proc/self/fd/{dir_fd}/{name}")
    finally:
        os.close(dir_fd)


def listen(directory: Path, backlog: int = 128, name: str = SOCKET_NAME) -> socket.socket:
    """A listening Unix socket at ``directory/name`` (any path length)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        at_path(sock.bind, directory, name)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


async def wait_ready(fd: int, timeout: float) -> bool:
    """Wait for the proxy's readiness byte on pipe ``fd``; False on EOF or timeout."""
    loop = asyncio.get_running_loop()
    signalled: asyncio.Future[bool] = loop.create_future()

    def on_readable() -> None:
        try:
            data = os.read(fd, 1)
        except BlockingIOError:
            return
        if not signalled.done():
            signalled.set_result(bool(data))

    os.set_blocking(fd, False)
    loop.add_reader(fd, on_readable)
    try:
        async with asyncio.timeout(timeout):
            return await signalled
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


def start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (None if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces or parentheses itself.
    return int(raw[raw.rindex(")") + 2 :].split()[19])


def write_pid_file(directory: Path, pid: int) -> None:
    ticks = start_ticks(pid)
    (directory / PID_FILE).write_text(f"{pid} {ticks if ticks is not None else 0}\n")


def kill_leftover(directory: Path) -> bool:
    """Kill the process group recorded in ``directory/pid`` if that very process still
    runs; True when one was killed."""
    try:
        pid_text, _, ticks_text = (directory / PID_FILE).read_text().strip().partition(" ")
        pid, ticks = int(pid_text), int(ticks_text or "0")
    except (OSError, ValueError):
        return False
    if pid <= 1:
        return False
    found = start_ticks(pid)
    if found is not None and found != ticks:
        return False  # the pid now belongs to another process
    # The leader may be gone while members of its group live on (a bubblewrap sandbox
    # stuck before it ran its command when its monitor died): the group id cannot have
    # been reused while they live, so the group is still ours to kill.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
        return True
    return False


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux 3.4+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


async def reap_orphan(pidfd: int) -> None:
    """Reap the process of ``pidfd`` if it became this process's child (an orphan given to
    the subreaper); returns at once when it is not (its parent reaped it), and waits
    (bounded) for it to exit while it is still dying."""
    if _reaped(pidfd):
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:  # a pidfd turns readable when its process exits
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        async with asyncio.timeout(ORPHAN_REAP_SECONDS):
            await exited
    except TimeoutError:
        return
    finally:
        loop.remove_reader(pidfd)
    _reaped(pidfd)


def _reaped(pidfd: int) -> bool:
    """Reap without blocking; True when reaped now, or when it is not ours to reap."""
    try:
        return os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG) is not None
    except ChildProcessError:
        return True
