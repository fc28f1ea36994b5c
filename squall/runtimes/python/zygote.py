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

What a forked container does, from its first process to serving (the child socket's
protocol, the process tree, and why one process per container), is
:mod:`zygote_container`'s; it is imported here, before the zygote forks anything.

Everything that runs action code is an unprivileged uid in a user namespace of its own
(capabilities there would not reach the zygote's), in namespaces of its own, in the
cgroup the invoker moved the runtime into before it set anything up.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zygote_container import enter, receive, uncover_proc, warm_up  # imports proxy

sys.path.pop(0)  # a container's sys.path is that of a started proxy (-I: no script dir)

# What /init imports on first use in a started proxy, and what the runtime imports as its
# namespace's init (proxy.orphans(), which warm_up asks for): imported once, here.
import _posixsubprocess  # noqa: F401
import base64  # noqa: F401
import importlib.util  # noqa: F401
import tempfile  # noqa: F401
import traceback
import zipfile  # noqa: F401

# Its functions hold it; out of sys.modules, an action's own module of that name imports
# (``proxy`` stays, as before).
del sys.modules["zygote_container"]


# -- the zygote ------------------------------------------------------------------------


def fork_container(child_fd: int, control: socket.socket) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.closerange(3, child_fd)
            os.closerange(child_fd + 1, 1 << 16)
            enter(socket.socket(fileno=child_fd))
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(1)
    os.close(child_fd)


def serve(control: socket.socket) -> None:
    """Fork a container per ``fork`` message, end at EOF.

    As little as possible runs here between forks: every page of memory this loop writes
    after a fork (reference counts of the objects it touches) stops being shared with the
    containers forked before, and becomes their own copy. So no selector and no reaping:
    the processes it forks exit at once and, SIGCHLD being ignored, the kernel reaps them.
    """
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        message, fds = receive(control, 64)
        if message is None:
            return
        if message == b"fork" and len(fds) == 1:
            fork_container(fds[0], control)
        else:
            for fd in fds:
                os.close(fd)


def immortalize() -> int:
    """Make every object the zygote holds immortal (PEP 683), on CPython 3.12 and 3.13;
    returns how many objects (0: not this interpreter).

    Why: a forked container copies each page whose memory changes, and reading an object
    in CPython writes to it (its reference count). CPython 3.12 skips those writes for
    immortal objects — the static types, small ints, interned strings — but not for the
    objects the zygote made: its modules, functions, classes, dictionaries, every one of
    which a container's requests touch. Immortal, they stay shared (``bench/
    container_memory.py``: 2.3 → 1.6 MB private per container on CPython 3.13).

    How: an object is immortal when the low 32 bits of its 64-bit reference count are all
    ones (``_Py_IMMORTAL_REFCNT`` of CPython 3.12 and 3.13; 3.14 changed the scheme, so
    the versions are named). Every object the collector tracks, and everything they
    refer to, is set so. Such an object is never freed; the zygote's objects would live
    as long as the container anyway, and nothing here relies on one being freed (the
    descriptors a container must not keep are closed explicitly, ``fork_container``)."""
    supported = (3, 12) <= sys.version_info[:2] <= (3, 13) and sys.implementation.name == "cpython"
    # A free-threaded build ("t") lays out its reference counts differently.
    if not supported or "t" in sys.abiflags or ctypes.sizeof(ctypes.c_void_p) != 8:
        return 0
    offset = 0 if sys.byteorder == "little" else 4  # the low half of ob_refcnt
    seen: set[int] = set()
    pending = gc.get_objects()
    seen.update((id(seen), id(pending)))  # this function's own, freed as usual
    immortal = ctypes.c_uint32
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        immortal.from_address(id(obj) + offset).value = 0xFFFFFFFF
        pending += gc.get_referents(obj)
    return len(seen) - 2


def main() -> None:
    control = socket.socket(fileno=int(os.environ.pop("__OW_ZYGOTE_FD")))
    uncover_proc()
    warm_up()
    immortalize()
    gc.freeze()  # the collector never writes to (so never copies) the zygote's objects
    control.send(b"ready")
    serve(control)


if __name__ == "__main__":
    main()
