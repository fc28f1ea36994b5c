"""Pid 1's duty in Squall's CPython runtime proxy (:mod:`proxy`): reaping orphans
without ever reaping a child of the action's (:class:`Orphans`).

Standard library only, never ``squall``; as :mod:`proxy`, it imports only what the
interpreter has loaded at its start (``os`` once :meth:`Orphans.track` runs: only as pid 1).
"""

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# How many pids of its own the runtime notes before it forgets those that are gone.
OWN_PRUNE_AT = 256


class Orphans:
    """Pid 1's duty, when the runtime is its pid namespace's first process (a container
    forked by the Python zygote): reap the orphans the kernel hands it — processes whose
    parent exited before them — without ever reaping a child of its own, whose exit
    status belongs to the action (``subprocess`` reports 0 for a child someone else
    reaped).

    The kernel does not tell an adopted process from an own child, so the runtime notes
    the pids of the processes it starts: :meth:`track` wraps ``os.fork``, ``os.forkpty``,
    ``os.posix_spawn``, ``os.posix_spawnp`` and ``_posixsubprocess.fork_exec`` (what
    ``subprocess``, ``multiprocessing``, ``pty`` and ``os.spawn*`` start processes with).
    A process started otherwise (a C extension forking by itself) is taken for an orphan
    once it exited. :meth:`reap` runs on the main thread between requests, so never while
    the action waits for a child on it; a zombie is reaped at the latest at the next
    request, and the container's pids limit bounds them meanwhile.
    """

    def __init__(self) -> None:
        self.own: set[int] = set()

    def track(self) -> None:
        """Note the pid of every process started from now on (see the class docstring)."""
        import _posixsubprocess
        import os  # pid 1 only: not on a true cold start's path (see proxy)

        for module, names in (
            (os, ("fork", "forkpty", "posix_spawn", "posix_spawnp")),
            (_posixsubprocess, ("fork_exec",)),
        ):
            for name in names:
                start = getattr(module, name, None)
                if start is not None:
                    setattr(module, name, self._noting(start))
        subprocess = sys.modules.get("subprocess")  # it binds fork_exec when imported
        if subprocess is not None and hasattr(subprocess, "_fork_exec"):
            subprocess._fork_exec = _posixsubprocess.fork_exec

    def _noting(self, start: "Callable[..., Any]") -> "Callable[..., Any]":
        own = self.own

        def started(*args: "Any", **kwargs: "Any") -> "Any":
            result = start(*args, **kwargs)
            pid = result[0] if isinstance(result, tuple) else result  # forkpty: (pid, fd)
            if isinstance(pid, int) and pid > 0:
                own.add(pid)
            return result

        started.__name__ = started.__qualname__ = start.__name__
        started.__doc__ = start.__doc__
        started.__wrapped__ = start  # type: ignore[attr-defined]
        return started

    def reap(self) -> None:
        """Reap every orphan that exited; one system call when no child did."""
        import os  # loaded by track: a dictionary lookup

        try:
            exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # no child at all
            self.own.clear()
            return
        if exited is None:
            if len(self.own) > OWN_PRUNE_AT:  # an action that reaps its children itself
                self.own = {p for p in self.own if os.path.exists(f"/proc/{p}")}
            return
        children = self.children()
        # Own pids that no longer exist are forgotten: the kernel may hand them out again.
        self.own -= {p for p in self.own if p not in children and not os.path.exists(f"/proc/{p}")}
        for pid, zombie in children.items():
            if zombie and pid not in self.own:
                try:  # noqa: SIM105 (contextlib is not imported: see the imports)
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    @staticmethod
    def children() -> dict[int, bool]:
        """This process's children (from its pid namespace's own ``/proc``): pid → zombie."""
        import os

        found: dict[int, bool] = {}
        me = str(os.getpid()).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as file:
                    stat = file.read()
            except OSError:
                continue  # it went meanwhile
            fields = stat[stat.rfind(b")") + 2 :].split()  # state, ppid, ...
            if len(fields) > 1 and fields[1] == me:
                found[int(entry)] = fields[0] == b"Z"
        return found
