"""The CPython zygote: a warm interpreter that forks ready-to-serve runtime containers.

Runs inside a bubblewrap sandbox made for it by ``squall.sandbox.zygote`` (the Python
runtime's read-only view, its own user namespace where it is uid 0 with every capability,
and pid/mount/ipc/uts/net namespaces of its own). It has imported :mod:`proxy` and what
``/init`` needs, so a container it forks costs a fork, not an interpreter start. Standard
library only; never imports ``squall``.

Protocol, over ``SOCK_SEQPACKET`` Unix sockets (one message per packet):

- control socket (fd ``__OW_ZYGOTE_FD``): the zygote sends ``ready`` once warm; then each
  ``fork`` message carries one descriptor, the child's end of a fresh socket pair, and the
  zygote forks a container on it. EOF (the invoker let go, or died) ends the zygote.
- child socket: the container's init sends ``here`` with ``SCM_CREDENTIALS`` (the kernel
  translates its pid into the invoker's pid namespace) and waits; the invoker moves it into
  the container's cgroup and answers ``confined``; init forks the runtime, which waits.
  When the container is wanted, the invoker sends ``go`` + JSON ``{"env", "fds",
  "tmp_bytes"}`` with the runtime's descriptors (listening socket, ready and lifeline
  pipes, stdout, stderr). EOF instead of ``confined`` or ``go`` ends the container.

Process tree of one container (all forked, nothing exec'd)::

    zygote ── monitor: new user namespace (uid 65534 → the zygote's uid 0, no further
              │        user namespaces allowed in it), then new mount/pid/ipc/uts(/net)
              │        namespaces; waits for init; dies with the zygote (PDEATHSIG)
              └── init (pid 1): loopback up, its own read-only /proc, empty capability
                  │   bounding set; sends ``here``; once confined forks the runtime and
                  │   reaps; dies with the monitor, and its pid namespace with it
                  └── runtime (pid 2): on ``go`` mounts its size-capped /tmp and /dev/shm,
                      drops every capability, sets no_new_privs, and runs the proxy's
                      ``main`` on the given descriptors

Everything that runs action code is an unprivileged uid in a user namespace of its own
(capabilities there would not reach the zygote's), in namespaces of its own, in the
cgroup the invoker moved init into before ``go``.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import json
import os
import selectors
import signal
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy

sys.path.pop(0)  # a container's sys.path is that of a started proxy (-I: no script dir)

# What /init imports on first use in a started proxy: imported once, here.
import base64  # noqa: F401
import importlib.util  # noqa: F401
import tempfile  # noqa: F401
import traceback
import zipfile  # noqa: F401

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_REC, MS_PRIVATE = 0x20, 0x4000, 0x40000
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
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

libc = ctypes.CDLL(None, use_errno=True)


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


def monitor(child: socket.socket) -> None:
    """First process of a container (see the module docstring); never returns."""
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    check(libc.unshare(CLONE_NEWUSER), "unshare user")
    write("/proc/self/setgroups", "deny")
    write("/proc/self/uid_map", f"{SANDBOX_UID} 0 1")
    write("/proc/self/gid_map", f"{SANDBOX_UID} 0 1")
    # The user namespace's own limit: nothing in it may create a user namespace.
    write("/proc/sys/user/max_user_namespaces", "0")
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    # A network namespace of its own: loopback only, until the invoker gives it a link.
    check(libc.unshare(flags | CLONE_NEWNET), "unshare")
    pid = os.fork()
    if pid == 0:
        try:
            init(child)
        finally:
            os._exit(1)
    child.close()
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def init(child: socket.socket) -> None:
    """Pid 1 of the container; returns only on failure."""
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    # Pid 1 gets only the signals it handles: with the zygote's SIGINT handler left in
    # place, the action could end its own container with kill(1, SIGINT).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setsid()
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private /")
    socket.sethostname(HOSTNAME)
    loopback_up()
    mount("proc", "/proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # The bounding set now (no process of the container can ever regain a capability);
    # the effective ones go when the runtime gets "go", after its mounts.
    with open("/proc/sys/kernel/cap_last_cap") as file:
        last = int(file.read())
    for cap in range(last + 1):
        check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "capbset")
    check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "ambient")
    creds = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
    child.sendmsg([b"here"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
    # The runtime is forked only once init is in the container's cgroup: born inside.
    message, fds = receive(child)
    for fd in fds:
        os.close(fd)
    if message != b"confined":
        os._exit(0)  # the invoker let go of this spare
    pid = os.fork()
    if pid == 0:
        try:
            runtime(child)
        finally:
            os._exit(1)
    child.close()
    reap(pid)


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def drop_privileges() -> None:
    """No capabilities left (init emptied the bounding and ambient sets) and no way to
    gain any (no_new_privs), as bubblewrap leaves a sandbox's processes."""
    header = struct.pack("Ii", LINUX_CAPABILITY_VERSION_3, 0)
    data = bytes(24)  # two empty __user_cap_data_struct: effective, permitted, inheritable
    check(libc.syscall(SYS_CAPSET, header, data), "capset")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def reap(runtime_pid: int) -> None:
    """Reap every orphan of the namespace; exit as the runtime did (the kernel then kills
    whatever is left in the namespace)."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(1)
        if pid == runtime_pid:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def runtime(child: socket.socket) -> None:
    """The runtime process: waits for "go", then runs the proxy on the descriptors sent."""
    # Touch every object once while waiting: the copy-on-write faults of the first
    # reference count updates happen now, not while the invoker waits for readiness.
    for _ in gc.get_objects():
        pass
    for target in ("/tmp", "/dev/shm"):
        options = f"size={SPARE_TMP_BYTES},mode=1777"
        mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options)
    message, fds = receive(child)
    if message is None or not message.startswith(b"go"):
        os._exit(0)  # the invoker let go of this spare
    child.close()
    config = json.loads(message[len(b"go") :])
    size = max(int(config["tmp_bytes"]), 1024 * 1024)
    if size != SPARE_TMP_BYTES:
        for target in ("/tmp", "/dev/shm"):
            mount("tmpfs", target, "tmpfs", MS_REMOUNT | MS_NOSUID | MS_NODEV, f"size={size}")
    drop_privileges()
    os.setsid()
    given = dict(zip(config["fds"], fds, strict=True))
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(given.pop("stdout"), 1)
    os.dup2(given.pop("stderr"), 2)
    for fd in {null, *fds} - {0, 1, 2, *given.values()}:
        os.close(fd)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in config["env"].items()})
    os.environ.update({f"__OW_{name.upper()}_FD": str(fd) for name, fd in given.items()})
    os.chdir("/tmp")
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    proxy.main()


def receive(sock: socket.socket) -> tuple[bytes | None, list[int]]:
    """One message and the descriptors sent with it; (None, []) at EOF."""
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(16 * 4))
            break
        except InterruptedError:
            continue
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += list(struct.unpack(f"{usable // 4}i", payload[:usable]))
    return (data or None), fds


# -- the zygote ------------------------------------------------------------------------


def fork_container(child_fd: int, control: socket.socket) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            control.close()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.closerange(3, child_fd)
            os.closerange(child_fd + 1, 1 << 16)
            monitor(socket.socket(fileno=child_fd))
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(1)
    os.close(child_fd)


def serve(control: socket.socket) -> None:
    """Fork a container per ``fork`` message, reap the monitors, end at EOF."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
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
            if message == b"fork" and len(fds) == 1:
                fork_container(fds[0], control)
            else:
                for fd in fds:
                    os.close(fd)


def main() -> None:
    control = socket.socket(fileno=int(os.environ.pop("__OW_ZYGOTE_FD")))
    uncover_proc()
    gc.freeze()  # the collector never writes to (so never copies) the zygote's objects
    control.send(b"ready")
    serve(control)


if __name__ == "__main__":
    main()
