"""A container the CPython zygote (:mod:`zygote`) forks: from entering its namespaces
to serving.

Runs in the zygote's sandbox, imported by the zygote before it forks anything (so its
code is shared with every container); standard library only, never imports ``squall``.

Protocol, over the child socket (``SOCK_SEQPACKET``, one message per packet; the zygote
forks a container on each one it receives): the container's pid 1 sends ``here`` with
``SCM_CREDENTIALS`` (the kernel translates its pid into the invoker's pid namespace) and
waits; the invoker moves it into the container's cgroup and answers ``confined``; it
sets up its namespaces and waits. Then the invoker sends ``go`` + JSON ``{"env", "fds",
"tmp_bytes"}`` with the runtime's descriptors (listening socket, ready and lifeline
pipes, stdout, stderr): the runtime starts the proxy (lifeline thread, which drops its
own capabilities first, listening socket, line-buffered output) and writes its ready
byte, but serves nothing yet — a *started spare*. When the container is wanted, the
invoker sends ``take`` + JSON ``{"env", "tmp_bytes"}`` (the container's own environment
and /tmp size): the runtime resizes ``/tmp`` and ``/dev/shm`` if needed, drops its main
thread's capabilities (and waits until the lifeline thread has dropped its own),
replaces its environment and only then serves the requests waiting in its socket's
backlog. EOF instead of
``confined``, ``go`` or ``take`` ends the container.

Process tree of one container (all forked, nothing exec'd)::

    zygote ── (enter: new user namespace, uid 65534 → the zygote's uid 0, no further user
              │  namespaces allowed in it; new mount/pid/ipc/uts/net namespaces; forks,
              │  exits at once)
              └── runtime (pid 1, reparented to the zygote sandbox's init): ``here``; once
                  confined: private mounts, loopback up, its own read-only /proc, empty
                  capability bounding set, size-capped /tmp and /dev/shm; on ``go``
                  starts the proxy on the given descriptors; on ``take`` takes back
                  the CPUs it had at ``go``, drops every capability, sets
                  no_new_privs and serves — as its namespace's init reaping the
                  orphans it is handed (``proxy.orphans()``). Its exit ends the
                  namespace.

One process per container: every page a forked process writes — or that the zygote
rewrites after the fork — becomes a private copy of that process, about 1 MB for a
Python process doing next to nothing (``bench/container_memory.py`` measures each), so
there is no separate init, and the process that entered the namespaces does not stay.
Before it forks anything the zygote serves a no-op action a few times (:func:`warm_up`)
and freezes its objects (``gc.freeze``), so that the writes a container's first requests
would make to shared pages were made once, in the zygote.
"""

from __future__ import annotations

import _thread
import ctypes
import fcntl
import gc
import json
import os
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time

import proxy

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_REC, MS_PRIVATE = 0x20, 0x4000, 0x40000
MNT_DETACH = 2
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SYS_CAPSET = 126 if os.uname().machine == "x86_64" else 91  # aarch64: 91
SANDBOX_UID = 65534
HOSTNAME = "squall"
#: The size a spare's /tmp and /dev/shm are mounted with, changed on "go" when the
#: container's differs (a remount is cheaper than a mount). OpenWhisk's default memory.
SPARE_TMP_BYTES = 256 * 1024 * 1024
#: How many no-op actions the zygote initializes and runs before it forks anything (see
#: :func:`warm_up`): CPython 3.11 specializes a function's bytecode after 8 calls.
WARM_UP_ROUNDS = 20

libc = ctypes.CDLL(None, use_errno=True)
# Resolved here, once: resolving caches a function object in libc's dictionary, a write
# each container would otherwise make to a page it shares with the zygote.
for _name in ("mount", "umount2", "unshare", "prctl", "syscall"):
    getattr(libc, _name)


def check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str, target: str, fstype: str, flags: int, data: str = "") -> None:
    encoded = data.encode() if data else None
    check(libc.mount(source.encode(), target.encode(), fstype.encode(), flags, encoded), target)


def write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def uncover_proc() -> None:
    """Unmount what bubblewrap bound over parts of the zygote's /proc.

    A container mounts a /proc of its own, which the kernel allows in a less privileged
    user namespace only while a /proc of the same mount namespace is fully visible: its
    copy of the zygote's must not have anything mounted over parts of it.
    """
    covered = []
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            point = line.split()[4]
            if point.startswith("/proc/"):
                covered.append(point)
    for point in sorted(covered, key=len, reverse=True):
        check(libc.umount2(point.encode(), MNT_DETACH), f"umount {point}")


# -- the container ---------------------------------------------------------------------


def enter(child: socket.socket) -> None:
    """First process of a container, short-lived: enters a new user namespace (uid 65534
    → the zygote's uid 0, no further user namespaces allowed in it), then new mount, pid,
    ipc, uts and net namespaces, forks the container's pid 1 and exits at once.

    ``unshare`` puts only the caller's *children* in a new pid namespace, hence the fork;
    exiting at once, this process holds no memory for as long as the container lives (its
    pid 1 is reparented to the zygote sandbox's init, which reaps it)."""
    check(libc.unshare(CLONE_NEWUSER), "unshare user")
    write("/proc/self/setgroups", "deny")
    write("/proc/self/uid_map", f"{SANDBOX_UID} 0 1")
    write("/proc/self/gid_map", f"{SANDBOX_UID} 0 1")
    # The user namespace's own limit: nothing in it may create a user namespace.
    write("/proc/sys/user/max_user_namespaces", "0")
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    # A network namespace of its own: loopback only, until the invoker gives it a link.
    check(libc.unshare(flags | CLONE_NEWNET), "unshare")
    if os.fork() == 0:
        try:
            container(child)
        finally:
            os._exit(1)
    os._exit(0)


def container(child: socket.socket) -> None:
    """Pid 1 of the container, and its runtime; never returns.

    Pid 1 gets only the signals it handles (SIGINT is ignored until the proxy starts: the
    zygote's handler would end the container on kill(1, SIGINT)); as its namespace's
    init it reaps the orphans the kernel hands it (the proxy's ``proxy.orphans()``).
    Nothing of the action runs before the invoker moved it into the container's cgroup.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    creds = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
    child.sendmsg([b"here"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
    message, fds = receive(child)
    for fd in fds:
        os.close(fd)
    if message != b"confined":
        os._exit(0)  # the invoker let go of this spare
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private /")
    socket.sethostname(HOSTNAME)
    loopback_up()
    mount("proc", "/proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # The bounding set now (no process of the container can ever regain a capability);
    # the effective ones go on "go", after the mounts.
    with open("/proc/sys/kernel/cap_last_cap") as file:
        last = int(file.read())
    for cap in range(last + 1):
        check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "capbset")
    check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "ambient")
    runtime(child)


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def drop_privileges() -> None:
    """No capabilities left (the bounding and ambient sets were emptied) and no way to
    gain any (no_new_privs), as bubblewrap leaves a sandbox's processes."""
    header = struct.pack("Ii", LINUX_CAPABILITY_VERSION_3, 0)
    data = bytes(24)  # two empty __user_cap_data_struct: effective, permitted, inheritable
    check(libc.syscall(SYS_CAPSET, header, data), "capset")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def runtime(child: socket.socket) -> None:
    """The runtime: on "go", starts the proxy on the descriptors sent (listening, ready
    byte written) while still a spare; on "take", applies the container's own settings,
    drops every capability and serves."""
    for target in ("/tmp", "/dev/shm"):
        options = f"size={SPARE_TMP_BYTES},mode=1777"
        mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options)
    message, fds = receive(child)
    if message is None or not message.startswith(b"go"):
        os._exit(0)  # the invoker let go of this spare
    # Read before the ready byte: once started, the invoker may keep the main thread off
    # its own CPU for the take's wake-up (squall.sandbox.spare.Spare.keep_off_this_cpu);
    # these CPUs are given back on "take".
    every_cpu = os.sched_getaffinity(0)
    config = json.loads(message[len(b"go") :])
    tmp_bytes = resize_tmp(int(config["tmp_bytes"]), SPARE_TMP_BYTES)
    os.setsid()
    given = dict(zip(config["fds"], fds, strict=True))
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(given.pop("stdout"), 1)
    os.dup2(given.pop("stderr"), 2)
    for fd in {null, *fds} - {0, 1, 2, *given.values()}:
        os.close(fd)
    set_environment(config["env"])
    os.environ.update({f"__OW_{name.upper()}_FD": str(fd) for name, fd in given.items()})
    os.chdir("/tmp")
    lifeline = os.environ.pop("__OW_LIFELINE_FD", "")
    # Its lifeline thread starts now, off a take's path (a thread's start and the GIL's
    # first hand-overs between the two threads were most of the runtime's "take"). As
    # capabilities and no_new_privs are a thread's own, that thread drops its own before
    # anything else (or ends the runtime), and "take" waits until it has.
    confined = _thread.allocate_lock()
    confined.acquire()

    def confine_thread() -> None:
        try:
            drop_privileges()
        except BaseException:
            os._exit(1)
        confined.release()

    if not proxy.watch_lifeline(lifeline, first=confine_thread):
        confined.release()
    listener, orphans = proxy.start(lifeline=False)
    if not select.select([child], [], [], 0)[0]:
        # A spare with time to wait (not one forked for a waiting create): a rehearsal of
        # a container's first requests makes the copies of the pages they write now,
        # not while an activation waits for its /init.
        warm_up(rounds=1)
    # The runtime that will serve the container, and what its first run would build
    # (ctypes buffers for the per-run variables: proxy_action.OwnedEnv), made now.
    serving = proxy.Runtime()
    serving.own_environment()
    # A started spare: what is left on "take" is what only the container's action decides.
    message, fds = receive(child)
    for fd in fds:
        os.close(fd)
    if message is None or not message.startswith(b"take"):
        os._exit(0)  # the invoker let go of this spare
    # First: the action's threads and processes inherit it. The mask it had at "go" (an
    # operator's taskset on the invoker included); one whose CPUs all went offline
    # since is refused: then every CPU the kernel knows of (it keeps the online ones).
    try:
        os.sched_setaffinity(0, every_cpu)
    except OSError:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    child.close()
    config = json.loads(message[len(b"take") :])
    resize_tmp(int(config["tmp_bytes"]), tmp_bytes)
    drop_privileges()  # capabilities and no_new_privs are per thread: the main one's
    confined.acquire()  # and the lifeline thread's (dropped long ago, unless just forked)
    set_environment(config["env"])
    proxy.add_libraries()  # pops its variable again (the path was added on "go")
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    proxy.serve(listener, serving, orphans)


def resize_tmp(size: int, mounted: int) -> int:
    """Remount /tmp and /dev/shm with ``size`` bytes (at least 1 MiB) if they have another
    size; returns the size they have now. Needs the capabilities (before "take" drops them)."""
    size = max(size, 1024 * 1024)
    if size != mounted:
        for target in ("/tmp", "/dev/shm"):
            mount("tmpfs", target, "tmpfs", MS_REMOUNT | MS_NOSUID | MS_NODEV, f"size={size}")
    return size


def set_environment(env: dict[str, object]) -> None:
    """Exactly ``env`` (nothing of the zygote's, nor of the spare's before).

    Only what differs is written: each name is a libc ``unsetenv`` or ``setenv`` (a scan
    of ``environ``, a malloc), and a take's environment is mostly the spare's — clearing
    and setting all of it was ~0.15 ms of a take."""
    wanted = {str(k): str(v) for k, v in env.items()}
    environ = os.environ
    for name in [name for name in environ if name not in wanted]:
        del environ[name]
    for name, value in wanted.items():
        if environ.get(name) != value:
            environ[name] = value


def receive(sock: socket.socket, size: int = 1 << 20) -> tuple[bytes | None, list[int]]:
    """One message (at most ``size`` bytes) and the descriptors sent with it; (None, [])
    at EOF."""
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(size, socket.CMSG_SPACE(16 * 4))
            break
        except InterruptedError:
            continue
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += list(struct.unpack(f"{usable // 4}i", payload[:usable]))
    return (data or None), fds


def warm_up(rounds: int = WARM_UP_ROUNDS) -> None:
    """Serve ``/init`` and two ``/run`` of a no-op action ``rounds`` times, as a container
    does, then undo every trace of it (``sys.path``, ``sys.modules``, the environment, the
    working directory, the action's directory, tempfile's cached directory).

    Why: what a container's first requests write to memory they share with the zygote is
    copied into the container, page by page, and stays there. CPython 3.11 rewrites a
    function's bytecode in place once it ran a few times (specialization) and the first
    ``/init`` fills caches (importlib's, tempfile's): done here once, those writes are
    shared by every container instead of being copied into each (``bench/
    container_memory.py``: about 0.6 MB less per container)."""
    init = json.dumps({"value": {"code": "def main(args):\n    return {}\n"}}).encode()
    run = json.dumps({"value": {}, "activation_id": "0", "namespace": "_"}).encode()
    streams = sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__
    path, cwd, environ = list(sys.path), os.getcwd(), dict(os.environ)
    # As the invoker writes a cold start's: /init and a /run with its deadline headers at once.
    after = b"%s: 60000\r\n%s: %d\r\n" % (
        proxy.DEADLINE_AFTER.encode(),
        proxy.INIT_DEADLINE.encode(),
        time.monotonic_ns() + 60_000_000_000,
    )
    exchanges = ((b"/init", init, b""), (b"/run", run, after), (b"/run", run, b""))
    requests = b"".join(
        b"POST %s HTTP/1.1\r\nContent-Length: %d\r\n%s\r\n%s" % (target, len(body), extra, body)
        for target, body, extra in exchanges
    )
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"\0squall-zygote-{os.getpid()}")  # abstract: in its own network namespace
    listener.listen(1)
    try:
        with open(os.devnull, "w") as sink:
            # The sentinels a request ends with go nowhere (not into the zygote's log).
            sys.stdout = sys.stderr = sys.__stdout__ = sys.__stderr__ = sink
            for _ in range(rounds):
                # The container's path: its environment set, the proxy's loop (accept,
                # then the three requests at once), the reaping of orphans (there are none).
                set_environment(environ)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.connect(listener.getsockname())
                    client.sendall(requests)
                    proxy.serve(listener, proxy.Runtime(), proxy.orphans(), rounds=2)
                action = os.getcwd()  # /init made it and moved there
                os.chdir(cwd)
                if action == cwd:
                    break  # /init failed (no directory made): nothing to warm, or undo
                shutil.rmtree(action, ignore_errors=True)
                sys.path[:] = path
                sys.modules.pop("main__", None)
                # The action's own /init makes a directory of the same name (action-main):
                # it must not find this one's directory listing cached by the import system.
                sys.path_importer_cache.pop(action, None)
    finally:
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__ = streams
        listener.close()
        sys.path[:] = path
        sys.modules.pop("main__", None)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        tempfile.tempdir = None  # a container finds its own (its TMPDIR, its /tmp)
    gc.collect()
