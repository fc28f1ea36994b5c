"""The namespace sandbox: the bubblewrap command line that isolates one runtime.

:class:`BwrapSandbox` builds ``bwrap ... -- <interpreter> <proxy>`` so that the runtime:

- runs in new user, pid, mount, ipc, uts and network namespaces — its network namespace
  has only a loopback device until the invoker gives it a link out
  (:mod:`squall.sandbox.network`, which also decides what that link may reach), or is
  one the invoker prepared with its link beforehand, joined before bubblewrap runs (then
  bubblewrap makes no network namespace); the sandbox holds no capability over it, so it
  cannot change its addresses or routes;
- is uid/gid 65534 ("nobody") inside, holds no capabilities, cannot create further user
  namespaces (``--disable-userns``) and cannot gain privileges (bubblewrap sets
  ``no_new_privs``; every mount is ``nosuid``);
- sees a root made of: the host's ``/usr`` and its ``/bin``, ``/sbin``, ``/lib*`` (as the
  host has them: directories bound, merged-/usr symlinks recreated), the interpreter's
  install prefix when it lives elsewhere (e.g. a pyenv Python under ``/root``), the runtime
  proxy's directory at ``/opt/squall/<family>``, a generated ``/etc`` (``passwd``,
  ``group``, ``hosts``, ``nsswitch.conf``, ``localtime``, and when sandboxes may have a
  network a ``resolv.conf`` naming the resolvers they may use, and the host's public CA
  certificates), all read-only; a fresh ``/dev``
  (null, zero, random, tty, ...), a read-only ``/proc`` of its own pid namespace, and
  writable ``/tmp`` and ``/dev/shm`` tmpfs mounts capped in size — the only writable
  places (the root and ``/dev`` are remounted read-only once everything is mounted).
  Nothing else: no ``$SQUALL_HOME``, store, other containers, ``/root``, ``/home``,
  ``/etc/shadow``, ``/sys``;
- dies with its parent (``--die-with-parent``: bubblewrap's monitor process, itself a
  child of the invoker);
- never runs the runtime unconfined: it is born in its container's cgroup, with its
  resource limits (the supervisor's child joins the cgroup and sets them before it execs
  bubblewrap, or the start fails), and when the invoker still has something to do before
  the runtime runs (a link to give its network namespace) it is held on ``--block-fd``
  until the invoker, which learnt the sandbox's pid from ``--info-fd``, wrote to it.

Why ``/proc`` is read-only: when the invoker runs as root, the sandbox's uid 65534 is
mapped to host uid 0; without capabilities that is harmless, except that files owned by
root with write permission for their owner stay writable — bubblewrap does not cover
``/proc/sys`` in that case, and a writable ``/proc/sys/vm/*`` would change the host. The
view therefore holds no such file: everything bound is read-only, ``/proc`` included.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

SANDBOX_UID = 65534
SANDBOX_HOSTNAME = "squall"
RUNTIME_ROOT = "/opt/squall"
#: Top-level host paths that make up the system part of the sandbox's root.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Public certificate stores, for actions allowed to open TLS connections.
CERTIFICATES = ("/etc/ssl/certs", "/etc/ca-certificates", "/etc/pki/tls/certs")
PROBE_TIMEOUT_SECONDS = 10.0
#: What ``--unshare-all`` unshares, but the network namespace.
UNSHARE_ALL_BUT_NETWORK = (
    "--unshare-user-try",
    "--unshare-ipc",
    "--unshare-pid",
    "--unshare-uts",
    "--unshare-cgroup-try",
)

_PASSWD = "root:x:0:0:root:/tmp:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/tmp:/bin/sh\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
_HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
_NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"


def system_binds() -> list[str]:
    """bwrap arguments recreating the host's system directories (read-only)."""
    args: list[str] = []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


@functools.cache
def interpreter_prefix(interpreter: str) -> str | None:
    """The directory to bind so that ``interpreter`` (a resolved path) runs in the sandbox.

    None when it is under the system paths already; otherwise its install prefix (the
    parent of its ``bin`` directory, where a Python finds its standard library and
    libpython, and a Node.js its ``lib``), or its own directory.

    Computed once per interpreter (as :func:`system_binds` once per sandbox builder: the
    host's layout is fixed): its eight ``realpath`` calls, ~50 ``lstat``, took 0.25 ms
    of every true cold start before its spawn.
    """
    real = Path(os.path.realpath(interpreter))
    for system in SYSTEM_PATHS:
        base = os.path.realpath(system)
        if real.is_relative_to(base):
            return None
    return str(real.parent.parent if real.parent.name == "bin" else real.parent)


def write_etc(directory: Path, resolv_conf: str | None) -> None:
    """The sandbox's ``/etc`` (only what runtimes read), in ``directory``.

    ``localtime`` names UTC, as in OpenWhisk's containers (without it, ICU scans all of
    ``/usr/share/zoneinfo`` the first time a runtime formats a date: 20 ms per cold
    start). With a ``resolv_conf`` (sandboxes may have a network) it is written, and
    empty ``ssl/certs`` and ``ca-certificates`` directories are the mount points of the
    host's public certificates.
    """
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(mode=0o755, parents=True)
    files = {
        "passwd": _PASSWD,
        "group": _GROUP,
        "hosts": _HOSTS,
        "nsswitch.conf": _NSSWITCH,
        "resolv.conf": "",
    }
    if resolv_conf is not None:
        files["resolv.conf"] = resolv_conf
        for path in CERTIFICATES:
            if os.path.isdir(path):
                (directory / os.path.relpath(path, "/etc")).mkdir(mode=0o755, parents=True)
    for name, text in files.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o644)
    (directory / "localtime").symlink_to("/usr/share/zoneinfo/Etc/UTC")


class BwrapSandbox:
    """Builds sandbox command lines; see the module docstring for what they guarantee.

    ``bwrap`` is the resolved bubblewrap binary, ``etc`` the directory written by
    :func:`write_etc`, ``network`` whether sandboxes may get a network (then the host's
    public certificates are bound too).
    """

    def __init__(
        self, bwrap: str, etc: Path, *, network: bool, etc_bind: str | None = None
    ) -> None:
        self.bwrap = bwrap
        self.etc = etc
        #: Where bubblewrap finds ``etc`` (the supervisor's stage of it).
        self.etc_bind = etc_bind or str(etc)
        self.network = network
        #: The system directories' options (computed once: the host's layout is fixed).
        self.system = system_binds()

    def namespaces(self, network: bool = True) -> list[str]:
        """The namespace, identity and lifetime options (no file system view). Without
        ``network``, every namespace but the network's: the sandbox stays in the one it
        was started in (a namespace prepared for it, see :mod:`squall.sandbox.network`)."""
        unshare = ["--unshare-all"] if network else list(UNSHARE_ALL_BUT_NETWORK)
        return [
            *unshare,
            "--unshare-user",
            "--disable-userns",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--hostname",
            SANDBOX_HOSTNAME,
            "--die-with-parent",
        ]

    def command(
        self,
        argv: Sequence[str],
        *,
        binds: Sequence[tuple[str, str]],
        tmp_bytes: int,
        info_fd: int,
        block_fd: int | None,
        own_network: bool = True,
    ) -> list[str]:
        """``bwrap`` options then ``argv``; ``binds`` are extra (source, target) read-only
        binds (interpreter prefix, runtime directory). Without ``own_network`` bubblewrap
        makes no network namespace: it was started in one prepared for the sandbox.
        Without ``block_fd`` the sandbox does not wait for the invoker after its
        namespaces are made: only for a bubblewrap born in its container's cgroup with
        its limits, with nothing left to do for it before the runtime runs."""
        args = [self.bwrap, *self.namespaces(own_network), "--info-fd", str(info_fd)]
        if block_fd is not None:
            args += ["--block-fd", str(block_fd)]
        args += self.system
        for source, target in binds:
            args += ["--ro-bind", source, target]
        # Every mount costs about 0.3 ms of start-up: /etc is one directory, certificates
        # only for sandboxes that may use the network.
        args += ["--ro-bind", self.etc_bind, "/etc"]
        if self.network:
            for path in CERTIFICATES:
                if (self.etc / os.path.relpath(path, "/etc")).is_dir():
                    args += ["--ro-bind", path, path]
        size = str(max(tmp_bytes, 1024 * 1024))
        args += ["--dev", "/dev", "--size", size, "--perms", "1777", "--tmpfs", "/dev/shm"]
        args += ["--proc", "/proc", "--remount-ro", "/proc"]
        args += ["--size", size, "--perms", "1777", "--tmpfs", "/tmp", "--chdir", "/tmp"]
        # Last: the root (bubblewrap's own tmpfs, holding the mount points) and /dev turn
        # read-only; /tmp and /dev/shm are mounts of their own and stay writable.
        args += ["--remount-ro", "/dev", "--remount-ro", "/"]
        return [*args, "--", *argv]

    def zygote_command(
        self,
        argv: Sequence[str],
        *,
        binds: Sequence[tuple[str, str]],
        info_fd: int,
        block_fd: int,
    ) -> list[str]:
        """The zygote's sandbox (:mod:`squall.sandbox.zygote`): the runtime's view as in
        :meth:`command`, but uid 0 with every capability of its own user namespace (it
        creates its containers' namespaces and mounts), user namespaces allowed (each
        container gets one, in which the zygote forbids further ones), and a writable
        ``/proc`` (a container writes its user namespace's maps there, then mounts its own
        read-only ``/proc`` over it). Only the zygote's own code runs with these rights."""
        args = ["--unshare-all", "--unshare-user", "--uid", "0", "--gid", "0"]
        args += ["--cap-add", "ALL", "--hostname", SANDBOX_HOSTNAME, "--die-with-parent"]
        args = [self.bwrap, *args, "--info-fd", str(info_fd), "--block-fd", str(block_fd)]
        args += self.system
        for source, target in binds:
            args += ["--ro-bind", source, target]
        args += ["--ro-bind", self.etc_bind, "/etc"]
        if self.network:
            for path in CERTIFICATES:
                if (self.etc / os.path.relpath(path, "/etc")).is_dir():
                    args += ["--ro-bind", path, path]
        small = str(1024 * 1024)  # containers mount their own /tmp and /dev/shm over these
        args += ["--dev", "/dev", "--size", small, "--tmpfs", "/dev/shm", "--proc", "/proc"]
        args += ["--size", small, "--tmpfs", "/tmp", "--chdir", "/"]
        args += ["--remount-ro", "/dev", "--remount-ro", "/"]
        return [*args, "--", *argv]


def find_bwrap(name: str = "bwrap") -> str | None:
    """The bubblewrap binary on ``PATH`` (or ``name`` as a path), if any."""
    return shutil.which(name)


def probe(bwrap: str, uid: int | None = None) -> str | None:
    """Start one empty sandbox (as host ``uid``/gid, without supplementary groups, when
    given: as sandboxes run); None when it worked, else why it did not."""
    sandbox = BwrapSandbox(bwrap, Path("/nonexistent"), network=False)
    argv = [bwrap, *sandbox.namespaces(), *sandbox.system, "--proc", "/proc", "--", "true"]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
            cwd="/",
            user=uid,
            group=uid,
            extra_groups=None if uid is None else [],
        )
    except (OSError, subprocess.TimeoutExpired) as ex:
        return f"{bwrap} could not be run: {ex}"
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        if uid is not None:
            return (
                f"{bwrap} cannot create namespaces as an unprivileged uid ({uid}) here: "
                f"{reason}; sandboxes run as unprivileged host uids, which needs unprivileged "
                "user namespaces (sysctl user.max_user_namespaces > 0, and on kernels that "
                "have it kernel.unprivileged_userns_clone=1)"
            )
        return f"{bwrap} cannot create namespaces here: {reason}"
    return None
