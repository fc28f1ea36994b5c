"""The invoker's side of the sandbox supervisor (:mod:`squall.sandbox.pid1`) and the
sandboxes' host uids.

:class:`Supervisor` starts the supervisor once per isolating factory and asks it to
spawn each bubblewrap (a container's, or a zygote's). Guarantees:

- Whatever the moment the invoker dies (SIGKILL included: during its own start, the
  supervisor's, or a container's), every process it started through :meth:`spawn` dies
  with it: they all live in the supervisor's pid namespace, whose pid 1 dies with the
  invoker without a race (see :mod:`squall.sandbox.pid1`). This covers what
  bubblewrap's ``--die-with-parent`` cannot (it sets its death signal only after its
  fork, and its sandbox's only once set up).
- A spawned process runs as the host uid and gid given, with no supplementary group;
  the bind sources named at start (``sources``) are found at :meth:`staged` paths that an
  unprivileged uid can reach, even when the originals are under ``/root`` (mode 700).
- Every process the supervisor starts is born in the supervisor's cgroup (``cgroup``)
  until the invoker moves it into its container's — or, when :meth:`spawn` names the
  container's cgroup, joins that one before it execs (bubblewrap then never runs
  outside it, nor does anything it starts).
- ``spawn`` returns the process's pid *as the invoker sees it* and a pidfd that can never
  designate another process; the invoker never reaps it (pid 1 does).
- If the supervisor was killed (and every sandbox with it), the next :meth:`spawn` starts
  a new one (logged).
- :meth:`close` ends the supervisor and with it every process it spawned; idempotent.
- When the invoker dies, a sandbox whose cgroup below ``thaw`` (the sandboxes' parent
  cgroup directories) is frozen dies at once too: the launcher kills its members and thaws
  it (frozen tasks act on SIGKILL only once thawed; see :mod:`squall.sandbox.pid1`).

:class:`UidRange` hands out the host uids: one per container started through
bubblewrap, one per zygote (shared by that zygote's containers, which all belong to one
OpenWhisk namespace; see :mod:`squall.sandbox.zygote`).

Runs on the event loop thread; ``start`` blocks (bounded) while the supervisor starts.
Call ``start`` from a thread that lives as long as the invoker (its main thread): the
launcher's death signal follows the *thread* that forked it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import random
import socket
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from squall.errors import ContainerError

log = logging.getLogger(__name__)

SCRIPT = Path(__file__).with_name("pid1.py")
#: Where pid 1 mounts its stage (in its own mount namespace: the host sees an empty
#: directory, shared by every invoker of the host, each with its own private tmpfs).
STAGE = Path("/run/squall-sandbox")
START_TIMEOUT_SECONDS = 10.0
SUBUID_FILE = Path("/etc/subuid")
#: The owner whose ``/etc/subuid`` range the sandboxes use when it has one.
SUBUID_OWNER = "squall"
#: Without such an entry: 65536 ids from 0x70000000, above the ranges ``useradd`` hands
#: out from /etc/login.defs (100000 up, 65536 each) and systemd-nspawn's (below
#: 0x6FFFFFFF), below the 2^31 ids that trip signed-integer bugs.
DEFAULT_UIDS = (0x7000_0000, 65536)
_CREDS = struct.calcsize("3i")


@dataclass
class UidRange:
    """Host uids for sandboxes: ``count`` ids from ``base``; one id per holder, handed out
    in turn from a random start (ids freed last are reused last)."""

    base: int
    count: int
    _next: int = field(default=0, repr=False)
    _used: set[int] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self._next = random.randrange(self.count)

    @classmethod
    def detect(cls, owner: str = SUBUID_OWNER, path: Path = SUBUID_FILE) -> UidRange:
        """``owner``'s range in ``/etc/subuid`` (by name or uid), else :data:`DEFAULT_UIDS`."""
        names = {owner}
        with contextlib.suppress(KeyError):
            names.add(str(pwd.getpwnam(owner).pw_uid))
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in names and parts[1].isdigit():
                    return cls(int(parts[1]), max(1, int(parts[2] or "0")))
        return cls(*DEFAULT_UIDS)

    def take(self) -> int:
        """A uid no other holder has; ContainerError when all are taken."""
        if len(self._used) >= self.count:
            raise ContainerError(f"all {self.count} sandbox uids from {self.base} are in use")
        while (self.base + self._next) in self._used:
            self._next = (self._next + 1) % self.count
        uid = self.base + self._next
        self._next = (self._next + 1) % self.count
        self._used.add(uid)
        return uid

    def give_back(self, uid: int) -> None:
        self._used.discard(uid)


@dataclass(frozen=True)
class Spawned:
    """A process started by the supervisor: its pid (in the invoker's pid namespace)
    and a pidfd of it, which the caller owns."""

    pid: int
    pidfd: int


class Supervisor:
    """One supervisor per isolating factory; see the module docstring.

    ``label`` (the factory's directory) is in the supervisor's command line, so an
    operator sees whose it is; ``cgroup`` the ``cgroup.procs`` files it joins; ``thaw``
    the directories (one per hierarchy) whose frozen child cgroups are killed and thawed
    when the invoker dies.
    """

    def __init__(
        self,
        label: str,
        cgroup: Sequence[Path],
        sources: Sequence[str],
        thaw: Sequence[Path] = (),
    ) -> None:
        self._label = label
        self._cgroup = [str(p) for p in cgroup]
        self._thaw = [str(p) for p in thaw]
        self._sources = list(dict.fromkeys(sources))
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def staged(self, source: str) -> str:
        """Where spawned processes find ``source`` (one of those given at start)."""
        return str(STAGE / str(self._sources.index(source)))

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the supervisor and wait until pid 1 is ready (blocking, bounded);
        ContainerError with its stderr when it did not start."""
        STAGE.mkdir(mode=0o755, exist_ok=True)
        config = {
            "parent": os.getpid(),
            "cgroup": self._cgroup,
            "stage": str(STAGE),
            "sources": self._sources,
            "label": self._label,
            "thaw": self._thaw,
        }
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {"PATH": "/usr/bin:/bin", "__SQUALL_CONTROL_FD": str(theirs.fileno())}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(SCRIPT), orjson.dumps(config).decode()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        except OSError as ex:
            ours.close()
            raise ContainerError(f"cannot start the sandbox supervisor: {ex}") from ex
        finally:
            theirs.close()
        ours.settimeout(START_TIMEOUT_SECONDS)
        try:
            ready = ours.recv(16)
        except OSError:
            ready = b""
        if ready != b"ready":
            ours.close()
            self._process.kill()
            _, stderr = self._process.communicate()
            reason = stderr.decode(errors="replace").strip() or "no answer"
            raise ContainerError(f"the sandbox supervisor did not start: {reason}")
        ours.setblocking(False)
        self._control = ours

    async def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        stdout: int,
        stderr: int,
        fds: Sequence[int],
        uid: int | None,
        nofile: int | None = None,
        cgroup: Sequence[Path] | None = None,
        netns: int | None = None,
    ) -> Spawned:
        """Start ``argv`` with ``env``, ``stdout`` and ``stderr``, inheriting ``fds`` as 3,
        4, ... (in order), as host ``uid``/gid (None: as root), with ``nofile`` open files at
        most (soft and hard; set before it drops root), born in the cgroup whose
        ``cgroup.procs`` files ``cgroup`` names, if given (the process joins it before it
        execs ``argv``, so ``argv`` and all it starts never run outside; None: in the
        supervisor's), in the network namespace of descriptor ``netns`` if given (joined
        before it execs; None: the host's, to be left by ``argv``). The caller keeps and
        closes its copies. ContainerError when the supervisor is gone or the process did
        not start (nor joined its cgroup or network namespace)."""
        if self._control is None:
            raise ContainerError("the sandbox supervisor is not running")
        if not self.alive:
            # Killed from outside (its sandboxes died with it): a new one for what comes.
            log.warning("the sandbox supervisor exited; starting a new one")
            self.close()
            self.start()
            assert self._control is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        message = b"spawn" + orjson.dumps(
            {
                "argv": list(argv),
                "env": dict(env),
                "uid": uid,
                "nofile": nofile,
                "cgroup": None if cgroup is None else [str(p) for p in cgroup],
                "netns": netns is not None,
            }
        )
        try:
            try:
                extra = [] if netns is None else [netns]
                given = [theirs.fileno(), stdout, stderr, *fds, *extra]
                socket.send_fds(self._control, [message], given)
            except OSError as ex:
                raise ContainerError(f"the sandbox supervisor is gone: {ex}") from ex
            finally:
                theirs.close()
            return await _receive(ours)
        finally:
            ours.close()

    def pids(self) -> set[int]:
        """The launcher's pid (the invoker's child), if it runs."""
        return {self._process.pid} if self.alive and self._process is not None else set()

    def close(self) -> None:
        """End the supervisor and everything it spawned (blocking, bounded). Idempotent."""
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()
        if self._control is not None:
            self._control.close()  # EOF: pid 1 exits, the kernel kills its namespace
            self._control = None
        if self._process is not None:
            try:
                self._process.wait(START_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


async def _receive(sock: socket.socket) -> Spawned:
    """The spawned child's ``pid`` message: its pid (translated by the kernel) and pidfd."""
    loop = asyncio.get_running_loop()
    arrived: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not arrived.done():
            arrived.set_result(None)

    sock.setblocking(False)
    loop.add_reader(sock, on_readable)
    try:
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            await arrived
        data, ancillary, _, _ = sock.recvmsg(
            64, socket.CMSG_SPACE(_CREDS) + socket.CMSG_SPACE(struct.calcsize("i"))
        )
    except (TimeoutError, OSError) as ex:
        raise ContainerError(f"the sandbox supervisor did not start a process: {ex!r}") from ex
    finally:
        loop.remove_reader(sock)
    pid, pidfds = 0, []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = int(struct.unpack("3i", payload[:_CREDS])[0])
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            pidfds += list(struct.unpack(f"{usable // 4}i", payload[:usable]))
    if data != b"pid" or pid <= 0 or len(pidfds) != 1:
        for fd in pidfds:
            os.close(fd)
        raise ContainerError("a process of the sandbox supervisor failed before it started")
    os.set_inheritable(pidfds[0], False)
    return Spawned(pid, pidfds[0])
