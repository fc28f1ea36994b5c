"""Throttled requests per namespace and minute, as the dashboard shows them.

A 429 leaves no activation record (OpenWhisk stores none either), and the Prometheus
family ``squall_controller_throttled_requests_total`` deliberately has no namespace
label (a series per tenant). So the controller that refuses a request also counts it
here: per namespace, per wall-clock minute, per limit (OpenWhisk's names).

Guarantees:

- Counts are kept for :data:`KEEP_MINUTES` (a day); older minutes are dropped when the
  namespace is next counted or read, so memory is bounded by the namespaces throttled in
  the last day times the minutes in which they were.
- Counts are this controller's: in a cluster each controller counts what it refused.
- Event-loop only (called from request handlers); no lock needed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

KEEP_MINUTES = 24 * 60
MINUTE_MS = 60_000


class Refusals:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # namespace → minute start (epoch ms) → limit → count
        self._counts: dict[str, dict[int, dict[str, int]]] = {}

    def _minute(self) -> int:
        now_ms = int(self._clock() * 1000)
        return now_ms - now_ms % MINUTE_MS

    def _pruned(self, namespace: str) -> dict[int, dict[str, int]] | None:
        minutes = self._counts.get(namespace)
        if minutes is None:
            return None
        oldest = self._minute() - (KEEP_MINUTES - 1) * MINUTE_MS
        for minute in [m for m in minutes if m < oldest]:
            del minutes[minute]
        if not minutes:
            del self._counts[namespace]
            return None
        return minutes

    def refused(self, namespace: str, limit: str) -> None:
        """Count one request of ``namespace`` refused by ``limit``, in the current minute."""
        self._pruned(namespace)
        minutes = self._counts.setdefault(namespace, defaultdict(dict))
        counts = minutes[self._minute()]
        counts[limit] = counts.get(limit, 0) + 1

    def recent(self, namespace: str, since_ms: int) -> list[tuple[int, str, int]]:
        """``(minute start, limit, count)`` of the minutes starting at or after
        ``since_ms`` rounded down to its minute, oldest first."""
        minutes = self._pruned(namespace) or {}
        first = since_ms - since_ms % MINUTE_MS
        return [
            (minute, limit, count)
            for minute in sorted(minutes)
            if minute >= first
            for limit, count in sorted(minutes[minute].items())
        ]
