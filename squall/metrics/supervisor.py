"""Restarts of ``squall cluster up``'s members, as its controllers expose them.

The supervisor (``cli/supervisor.py``) is not a server: it records how often it restarted
each member in one small JSON file (``HOME/supervisor.json``, ``{"restarts": {"invoker1":
2}}``), replaced atomically (write a temporary file, then rename) after each restart. Every
controller it starts is told the file's path (``SQUALL_SUPERVISOR_FILE``) and adds this
family to its ``/metrics``, so an operator scraping any controller sees the restarts of
every member, that controller's own included (the file outlives the process):

- ``squall_cluster_member_restarts_total{member}``: times the supervisor started the
  member again after it died (``controller0``, ``invoker1``, ...), since ``cluster up``
  started; a member never restarted is absent.

A controller run without a supervisor (systemd, by hand) has no such family: there the
service manager counts restarts (``systemctl show -p NRestarts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

FAMILY = "squall_cluster_member_restarts"


def save_restarts(path: Path, restarts: Mapping[str, int]) -> None:
    """Replace ``path`` with ``restarts`` (atomically: a reader sees the old or the new)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps({"restarts": dict(restarts)}, sort_keys=True))
    os.replace(temporary, path)


def load_restarts(path: Path) -> dict[str, int]:
    """The counts in ``path``; empty when it is missing or unreadable (never raises)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        counts = json.loads(path.read_text()).get("restarts", {})
        return {str(k): int(v) for k, v in counts.items() if isinstance(v, int)}
    return {}


class _RestartsCollector(Collector):
    def __init__(self) -> None:
        self.restarts: dict[str, int] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            FAMILY,
            "Times squall cluster up started a member again after it died.",
            labels=["member"],
        )
        for member, count in sorted(self.restarts.items()):
            family.add_metric([member], count)
        yield family


class SupervisorMetrics:
    """The supervisor's restart counts read from its file at each scrape (a
    :class:`~squall.metrics.exposition.MetricFamilies`)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._collector = _RestartsCollector()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._collector)

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry

    async def refresh(self) -> None:
        # A small local file, read off the event loop all the same.
        self._collector.restarts = await asyncio.to_thread(load_restarts, self._path)
