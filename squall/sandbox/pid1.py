"""The sandbox supervisor: the process between an invoker and every sandbox it starts.

Run by :class:`squall.sandbox.supervisor.Supervisor` as ``python -I -S pid1.py <config>``
(standard library only, never imports ``squall``: it starts in milliseconds). Two
processes:

- the *launcher*, the invoker's child: sets ``PR_SET_PDEATHSIG`` (SIGTERM, handled: see
  below), then checks that its parent is still the invoker (``getppid()``; if the invoker
  died between the fork and the ``prctl``, it exits) — so it dies with the invoker
  whatever the timing;
  joins the supervisor's cgroup (every process it starts is born there until the invoker
  moves it into its container's); unshares a pid namespace and forks its only child;
- *pid 1* of that namespace: sets ``PR_SET_PDEATHSIG`` too, then checks a pipe whose only
  write end the launcher holds (``getppid()`` says 0 across a pid namespace): at EOF the
  launcher already died and it exits. When pid 1 dies the kernel SIGKILLs every process
  of its namespace and of the namespaces below it — every bubblewrap, sandbox, zygote and
  runtime the invoker ever started. That is the guarantee: a SIGKILLed invoker takes its
  launcher, which takes pid 1, which takes everything, and no step has a window.

The launcher's death signal is SIGTERM, which it handles (installed before the ``prctl``,
so it is never missed) by tearing down: SIGKILL to pid 1, then every *frozen* cgroup below
the sandboxes' parent cgroups (``thaw`` in the config, one directory per hierarchy) gets
its members SIGKILLed and is thawed (v1 ``freezer.state`` = ``THAWED``; v2 ``cgroup.kill``,
else ``cgroup.freeze`` = 0). A frozen task acts on SIGKILL only once thawed, so without
this a container paused when the invoker died would linger — and keep pid 1's exit
waiting — until the next invoker cleaned up. A frozen cgroup cannot fork, so the members
read are all of them. If the launcher itself is SIGKILLed, pid 1 still dies with it and
only frozen containers are left for the next invoker's start-up clean-up.

Pid 1 also prepares a mount namespace of its own (private to it and its children): a
``/proc`` of its pid namespace (where bubblewrap looks up the pids it sees), a tmpfs at
the *stage* directory, with each host directory the sandboxes bind (an
interpreter under ``/root``, the runtimes cache, the sandboxes' ``/etc``) bind-mounted
at ``<stage>/<n>`` while pid 1 still runs as root. Bubblewrap then runs as an
unprivileged uid and binds from the stage, whose path needs no search permission on
``/root`` (mode 700).

Protocol on the control socket (``SOCK_SEQPACKET``, fd ``__SQUALL_CONTROL_FD``): pid 1
sends ``ready``; each ``spawn`` + JSON ``{"argv", "env", "uid", "nofile", "cgroup", "netns"}``
message carries descriptors: a reply socket, the child's stdout and stderr, then the
descriptors it inherits as 3, 4, ... in that order, and last, when ``netns`` is true, a
network namespace. Pid 1 forks; the child joins that namespace (``setns``), moves the
descriptors into place, starts a session, joins the container's cgroup when ``cgroup``
names one (its ``cgroup.procs`` files: see :func:`join_targets`; a failure ends the child
before it execs, and the invoker sees the spawn fail), sets its open-files limit to ``nofile``
(inherited by everything it starts), drops root (no supplementary groups, uid and gid
``uid``), sends ``pid`` on the reply socket with ``SCM_CREDENTIALS`` (the kernel
translates its pid into the invoker's pid namespace) and a pidfd of itself, and execs
``argv``. EOF on the control socket (the invoker let go) ends pid 1, and with it every
sandbox.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C half: no stub
import contextlib
import ctypes
import fcntl
import json
import os
import resource
import select
import selectors
import signal
import socket
import struct
import sys

PR_SET_PDEATHSIG = 1
#: Plain ints (the enum members' values) for the forked child's resets: see spawn.
_SIGCHLD, _SIGINT, _SIGTERM = int(signal.SIGCHLD), int(signal.SIGINT), int(signal.SIGTERM)
# Every Python ignores these two at start; exec keeps an ignored signal ignored, so without
# a reset a sandbox's processes (a shell pipeline an action runs, say) would get EPIPE
# where a process normally dies of SIGPIPE — subprocess's ``restore_signals`` resets them.
_SIGPIPE, _SIGXFSZ = int(signal.SIGPIPE), int(signal.SIGXFSZ)
_RESET = (_SIGCHLD, _SIGINT, _SIGTERM, _SIGPIPE, _SIGXFSZ)
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC = 2, 4, 8, 0x1000, 0x4000
MS_SLAVE = 0x80000

libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def die_with_parent() -> None:
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    check(
        libc.mount(
            None if source is None else source.encode(),
            target.encode(),
            None if fstype is None else fstype.encode(),
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def stage(root: str, sources: list[str]) -> None:
    """Bind each source at ``<root>/<n>`` in a mount namespace of this process's own."""
    check(libc.unshare(CLONE_NEWNS), "unshare mount")
    # Nothing mounted here reaches the host; the host's later mounts still arrive.
    mount(None, "/", None, MS_REC | MS_SLAVE)
    # A /proc of this pid namespace: bubblewrap looks its child up there by the pid it
    # got from clone(), which is this namespace's (the host's /proc would show another).
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
    for index, source in enumerate(sources):
        target = os.path.join(root, str(index))
        if not os.path.exists(source):
            continue  # removed meanwhile: only the sandboxes that bind it will fail, saying so
        if os.path.isdir(source):
            os.mkdir(target, 0o755)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        mount(source, target, None, MS_BIND | MS_REC)


def receive(sock: socket.socket) -> tuple[bytes | None, list[int]]:
    """One message and its descriptors; (None, []) at EOF."""
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(64 * 4))
            break
        except InterruptedError:
            continue
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += list(struct.unpack(f"{usable // 4}i", payload[:usable]))
    return (data or None), fds


def child(
    config: dict[str, object], fds: list[int], reply: socket.socket, cgroup: list[str]
) -> None:
    """In the forked child: descriptors into place, join ``cgroup`` (the files to write
    ``0`` to, from :func:`join_targets`), drop root, report on ``reply`` (close-on-exec,
    above every target), exec. Never returns.

    Every page of pid 1 this Python touches is copied on write before the reply (≈ 4 µs a
    page fault here): what can be computed before the fork is, by the parent."""
    if config.get("netns") is True:
        # A network namespace prepared by the invoker (the last descriptor): joined while
        # still root in the host's user namespace, which owns it; what this process execs
        # then makes no network namespace of its own (see squall.sandbox.network).
        namespace = fds.pop()
        check(libc.setns(namespace, CLONE_NEWNET), "setns into the prepared network")
        os.close(namespace)
    stdio, inherited = fds[1:3], fds[3:]
    # Out of the way of the targets first: every given descriptor above all targets.
    high = max(3 + len(inherited) + 64, reply.fileno() + 1)
    moved = [os.dup2(fd, high + i, inheritable=False) for i, fd in enumerate(stdio + inherited)]
    for fd in set(fds):
        if fd not in moved:
            os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(moved[0], 1)
    os.dup2(moved[1], 2)
    for target, fd in enumerate(moved[2:], start=3):
        os.dup2(fd, target)
    for fd in moved:
        os.close(fd)
    os.setsid()
    os.chdir("/")
    for path in cgroup:
        write(path, "0")
    nofile = config.get("nofile")
    if isinstance(nofile, int):  # lowering one's own limit needs no capability
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    uid = config.get("uid")
    if isinstance(uid, int):
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    pidfd = os.pidfd_open(os.getpid())
    creds = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
    reply.sendmsg(
        [b"pid"],
        [
            (socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds),
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", pidfd)),
        ],
    )
    os.close(pidfd)
    argv = [str(a) for a in config["argv"]]  # type: ignore[attr-defined]
    env = {str(k): str(v) for k, v in config["env"].items()}  # type: ignore[attr-defined]
    os.closerange(3 + len(inherited), high + len(moved) + 1)  # the reply's too
    os.execve(argv[0], argv, env)


def join_targets(procs_files: object) -> list[str]:
    """The files a child writes ``0`` to, one per hierarchy, to move itself into the
    container's cgroup (one ``cgroup.procs`` path per hierarchy) before it execs:
    everything it starts is born inside. Looked up by pid 1 before the fork.

    The hierarchy's ``tasks`` file (cgroup v1) where there is one: a
    thread moving itself skips the kernel's global threadgroup lock, whose write side
    waits for an RCU grace period (about 10 ms here, on the cold start's path when the
    invoker moved bubblewrap's processes after the fact). This process has one thread (a
    fork's child), so moving that thread moves the whole process. Without a ``tasks``
    file (cgroup v2) it writes ``0`` to ``cgroup.procs``: the same move, with the lock.
    The child's write raises OSError when a hierarchy refuses it: the spawn then fails
    (nothing runs unconfined)."""
    if not isinstance(procs_files, list):
        return []
    targets = []
    for procs in procs_files:
        tasks = os.path.join(os.path.dirname(str(procs)), "tasks")
        targets.append(tasks if os.path.exists(tasks) else str(procs))
    return targets


def print_failure() -> None:
    """Say on stderr (the supervisor's log) why a spawn failed. traceback is imported
    here, not at the top: with linecache and tokenize it is ~0.45 MiB of the launcher's
    heap, which pid 1 shares, for a path taken only when something fails."""
    import traceback

    traceback.print_exc()


def spawn(message: bytes, fds: list[int], control: socket.socket) -> None:
    if len(fds) < 3:
        for fd in fds:
            os.close(fd)
        return
    config = json.loads(message[len(b"spawn") :])
    cgroup = join_targets(config.get("cgroup"))
    # The reply socket's object is made here, not in the child: socket.py's constructor
    # is ~50 copied pages there. Its descriptor is above every target of the child's
    # (3, 4, ... one per given descriptor at most) and closed on exec.
    above = 3 + len(fds)
    reply = socket.socket(fileno=fcntl.fcntl(fds[0], fcntl.F_DUPFD_CLOEXEC, above))
    try:
        pid = os.fork()
    except OSError:
        # EAGAIN/ENOMEM (a process limit, memory): this spawn fails, pid 1 and every
        # sandbox it holds go on. The caller sees its reply socket closed with no pid.
        print_failure()
        reply.close()
        for fd in fds:
            os.close(fd)
        return
    if pid == 0:
        try:
            # The control socket is close-on-exec (see launcher): not closed here.
            signal.set_wakeup_fd(-1)  # C: signal.py does not wrap it
            # _signal's, not signal's: the latter's wrapper turns the old handler back
            # into a Handlers enum, which for pid 1's SIGCHLD function raises and
            # formats a ValueError inside enum — ~60 copied pages, 0.25 ms, per spawn.
            for signum in _RESET:
                _signal.signal(signum, _signal.SIG_DFL)
            child(config, fds, reply, cgroup)
        except BaseException:
            print_failure()
        finally:
            os._exit(127)
    reply.close()
    for fd in fds:
        os.close(fd)


def serve(control: socket.socket) -> None:
    """Spawn per ``spawn`` message, reap every child and orphan, end at EOF."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    control.send(b"ready")
    while True:
        for key, _ in selector.select():
            if key.fileobj == wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                with contextlib.suppress(ChildProcessError):
                    while os.waitpid(-1, os.WNOHANG)[0] > 0:
                        pass
                continue
            message, fds = receive(control)
            if message is None:
                return
            if message.startswith(b"spawn"):
                spawn(message, fds, control)
            else:
                for fd in fds:
                    os.close(fd)


def pid1(alive: int, control: socket.socket, config: dict[str, list[str] | str]) -> None:
    """Pid 1 of the supervisor's namespace; returns when it should exit."""
    die_with_parent()
    # The launcher may have died before the prctl: then its end of the pipe is closed.
    if select.select([alive], [], [], 0)[0]:
        return
    os.close(alive)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stage(str(config["stage"]), list(config["sources"]))
    serve(control)


def write(path: str, value: str) -> None:
    # One write() of the whole value: cgroup files take one value per write call.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def frozen(group: str) -> bool:
    """Whether cgroup directory ``group`` is frozen or freezing (v1 or v2)."""
    with contextlib.suppress(OSError), open(os.path.join(group, "freezer.state")) as state:
        return state.read().strip() != "THAWED"
    with contextlib.suppress(OSError), open(os.path.join(group, "cgroup.freeze")) as state:
        return state.read().strip() == "1"
    return False


def thaw(roots: list[str]) -> None:
    """Kill and thaw every frozen cgroup below ``roots`` (see the module docstring)."""
    for root in roots:
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            group = os.path.join(root, name)
            if not os.path.isdir(group) or not frozen(group):
                continue
            with contextlib.suppress(OSError):
                write(os.path.join(group, "cgroup.kill"), "1")  # v2, Linux 5.14+
                continue
            with contextlib.suppress(OSError), open(os.path.join(group, "cgroup.procs")) as procs:
                for pid in procs.read().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            for file, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
                with contextlib.suppress(OSError):
                    write(os.path.join(group, file), value)


def teardown(roots: list[str], namespace: list[int]) -> None:
    """The invoker died (or asked so): pid 1 and every sandbox go now, frozen ones too."""
    try:
        for pid in namespace:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # the kernel kills its whole pid namespace
        thaw(roots)
    finally:
        os._exit(1)


def launcher(config: dict[str, list[str] | str]) -> int:
    """The invoker's child; returns the exit status."""
    namespace: list[int] = []  # pid 1, once forked
    roots = [str(root) for root in config.get("thaw", [])]
    signal.signal(signal.SIGTERM, lambda *_: teardown(roots, namespace))
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), "pdeathsig")
    if os.getppid() != int(config["parent"]):  # type: ignore[arg-type]
        return 0  # the invoker died before the prctl
    control = socket.socket(fileno=int(os.environ.pop("__SQUALL_CONTROL_FD")))
    # Close-on-exec: pid 1's children then need not close it between fork and exec.
    control.set_inheritable(False)
    for procs in config["cgroup"]:
        with open(procs, "w") as file:
            file.write(str(os.getpid()))
    alive, keep = os.pipe()
    check(libc.unshare(CLONE_NEWPID), "unshare pid")
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.close(keep)
            pid1(alive, control, config)
        except BaseException:
            import traceback  # only when something failed (see spawn)

            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    namespace.append(pid)
    os.close(alive)
    control.close()
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        return os.waitstatus_to_exitcode(status) & 0xFF


if __name__ == "__main__":
    sys.exit(launcher(json.loads(sys.argv[1])))
