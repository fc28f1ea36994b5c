"""Keeping ``squall cluster up``'s members up: a member that dies is started again.

:meth:`Supervisor.run` watches the members of a started :class:`LocalCluster` until it is
interrupted. A member that exited (a crash, ``kill -9``, an out-of-memory kill) is started
again after a back-off that doubles with each restart in a row (``BASE_S``, then twice
that, and so on up to ``CAP_S``) and starts over once the member has stayed up
``STABLE_S``; so a member
that cannot start at all (a broken setting) is retried slowly, not in a busy loop, while
the others keep serving. Each death and each restart is one log line (``squall.cluster``
logger), and the counts are written to ``HOME/supervisor.json``, which every controller
exposes as ``squall_cluster_member_restarts_total{member}`` (``metrics/supervisor.py``).

A restarted controller listens on the same port (nginx, or ``wskprops``, still point at
it) and takes back its activations (``controller/restart.py``); a restarted invoker takes
its topic again. The supervisor runs on the caller's thread and holds no lock: nothing
else spawns or stops members while it runs (``cluster up`` stops it before ``close``).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from squall.cli.local_cluster import SUPERVISOR_FILE, LocalCluster
from squall.metrics.supervisor import save_restarts

log = logging.getLogger("squall.cluster")

BASE_S = 0.5
CAP_S = 30.0
#: A member up this long has recovered: its next restart waits BASE_S again.
STABLE_S = 30.0
POLL_S = 0.2


def backoff_s(attempt: int) -> float:
    """The wait before the ``attempt``-th restart in a row (1-based)."""
    return min(CAP_S, BASE_S * 2.0 ** min(attempt - 1, 30))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


@dataclass
class _Down:
    """A member seen dead, and when it is due to start again."""

    due: float
    attempt: int


class Supervisor:
    def __init__(
        self, cluster: LocalCluster, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._cluster = cluster
        self._clock = clock
        self.restarts: dict[str, int] = {}
        self._streak: dict[str, int] = {}  # restarts in a row, per member
        self._down: dict[str, _Down] = {}

    def run(self, until: Callable[[], bool] = lambda: False) -> None:
        """Watch and restart members until ``until()`` is true (or an interrupt)."""
        while not until():
            self.check()
            time.sleep(POLL_S)

    def check(self) -> None:
        """One round: notice members that died, restart those whose back-off ran out."""
        now = self._clock()
        for member in self._cluster.members.values():
            process = member.process
            if process is None or process.poll() is None:
                continue
            down = self._down.get(member.name)
            if down is None:
                uptime = now - member.started_at
                streak = 1 if uptime >= STABLE_S else self._streak.get(member.name, 0) + 1
                self._streak[member.name] = streak
                wait = backoff_s(streak)
                self._down[member.name] = _Down(now + wait, streak)
                log.warning("%s (pid %d) exited with %s after %.1f s; restart %d in %.1f s",
                            member.name, process.pid, describe_exit(process.returncode),
                            uptime, streak, wait)  # fmt: skip
                continue
            if now < down.due:
                continue
            del self._down[member.name]
            try:
                started = self._cluster.spawn(member.name)
            except OSError as error:  # could not even fork: try again later
                log.error("%s could not be started: %s", member.name, error)
                self._down[member.name] = _Down(now + backoff_s(down.attempt), down.attempt)
                continue
            self.restarts[member.name] = self.restarts.get(member.name, 0) + 1
            save_restarts(self._cluster.home / SUPERVISOR_FILE, self.restarts)
            pid = started.process.pid if started.process else -1
            log.warning("%s restarted (pid %d, restart %d of it)",
                        member.name, pid, self.restarts[member.name])  # fmt: skip
