"""What a process spawned by the sandbox supervisor (pid 1, squall/sandbox/pid1.py) starts
with: exactly the descriptors it was given, in order, none of pid 1's signal handlers
nor its ignored SIGINT and SIGTERM, its
uid, its cgroup — nothing of pid 1's (the control socket, the reply socket, the wake-up
pipe). Real supervisor, real cgroup (v1 ``tasks`` or v2 ``cgroup.procs``), as root."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from squall.sandbox import pid1
from squall.sandbox.supervisor import Supervisor

UID = 0x7000_0000 + 4243
#: Prints what the test checks: its status lines, the shell's descriptors (``ls``),
#: one line read from each inherited descriptor, its cgroups.
SCRIPT = r"""
grep -E '^(SigIgn|SigCgt|Uid)' /proc/self/status
ls -l /proc/$$/fd
n=3; while [ "$n" -lt "$1" ]; do read -r line <&$n && echo "got $n $line"; n=$((n + 1)); done
cat /proc/self/cgroup
"""


@pytest.fixture
def cgroup_dir() -> Iterator[Path]:
    """A cgroup of the pids hierarchy (v1) or of the unified one (v2), removed after."""
    base = Path("/sys/fs/cgroup/pids")
    if not (base / "tasks").exists():
        base = Path("/sys/fs/cgroup")
    group = base / f"squall-test-spawn-{os.getpid()}"
    group.mkdir()
    try:
        yield group
    finally:
        for _ in range(100):  # bounded: the spawned shell may still be leaving
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.02)


@pytest.mark.parametrize("given", [0, 7])
async def test_a_spawned_process_has_its_descriptors_signals_uid_and_cgroup_only(
    cgroup_dir: Path, anyio_backend: str, given: int
) -> None:
    # Given a supervisor and none or seven pipes to inherit as 3..9 (dash's highest),
    # each holding a line
    supervisor = Supervisor("test", [], [])
    supervisor.start()
    pipes = [os.pipe() for _ in range(given)]
    for index, (_, write_end) in enumerate(pipes):
        os.write(write_end, f"pipe{index}\n".encode())
        os.close(write_end)
    out_r, out_w = os.pipe()
    try:
        # When it spawns a shell as an unprivileged uid into the cgroup
        spawned = await supervisor.spawn(
            ["/bin/sh", "-c", SCRIPT, "sh", str(3 + given)],
            {"PATH": "/usr/bin:/bin"},
            stdout=out_w,
            stderr=out_w,
            fds=[read_end for read_end, _ in pipes],
            uid=UID,
            nofile=256,
            cgroup=[cgroup_dir / "cgroup.procs"],
        )
        os.close(out_w)
        out_w = -1
        chunks = []
        while chunk := await asyncio.to_thread(os.read, out_r, 65536):
            chunks.append(chunk)
        os.close(spawned.pidfd)
    finally:
        supervisor.close()
        for read_end, _ in pipes:
            os.close(read_end)
        os.close(out_r)
        if out_w >= 0:
            os.close(out_w)
    lines = b"".join(chunks).decode().splitlines()
    status = dict(line.split(":", 1) for line in lines if line.startswith(("Sig", "Uid")))
    # Then none of pid 1's handlers or ignored signals reach it (SIGPIPE and SIGXFSZ,
    # which every Python ignores, included: a shell pipeline dies of SIGPIPE as usual)
    ignored = int(status["SigIgn"], 16)
    resets = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ)
    assert [n for n in resets if ignored >> (n - 1) & 1] == []
    assert status["Uid"].split() == [str(UID)] * 4
    # And the shell holds exactly 0..2 and those given: no socket of pid 1's (control,
    # reply) nor its wake-up pipe
    listed = [re.search(r" (\d+) -> (.*)$", line) for line in lines]
    fds = {int(found[1]): found[2] for found in listed if found is not None}
    assert sorted(fds) == list(range(3 + given)), fds
    assert fds[0] == "/dev/null"
    assert all(fds[fd].startswith("pipe:") for fd in range(1, 3 + given)), fds
    # And descriptor 3 + n is the n-th one given
    assert [line for line in lines if line.startswith("got ")] == [
        f"got {3 + index} pipe{index}" for index in range(given)
    ]
    # And it runs in the cgroup named
    assert any(line.endswith("/" + cgroup_dir.name) for line in lines), lines


def test_a_failed_fork_fails_that_spawn_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given pid 1's spawn of one process (its reply socket and stdin, stdout, stderr),
    # and a fork the kernel refuses (EAGAIN: a process limit; injected, as no limit
    # binds root here)
    def refused() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refused)  # the module pid 1 forks through
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    given = [theirs.detach(), *(os.open(os.devnull, os.O_RDWR) for _ in range(3))]
    message = b"spawn" + json.dumps({"argv": ["true"]}).encode()
    # When it spawns: pid 1 goes on (no exception ends its loop and its sandboxes)
    pid1.spawn(message, given, ours)
    # Then the caller's end sees its reply closed with no pid, and pid 1 kept none of the
    # descriptors it was given
    ours.settimeout(5)
    assert ours.recv(64) == b""
    for fd in given:
        with pytest.raises(OSError):
            os.fstat(fd)
    ours.close()
