"""Serving metric families in Prometheus' text exposition format (version 0.0.4).

Each component (a controller, an invoker) keeps its families in a
:class:`~prometheus_client.CollectorRegistry` of its own, never the process-wide default
one: several controllers and invokers live in one process in the tests (and standalone
runs one of each), and the default registry refuses a second family of the same name.

A scrape first awaits every source's :meth:`MetricFamilies.refresh` (for figures only an
await can get, such as queue lengths from the bus), then renders each registry in turn
and concatenates them; the sources' family names must differ (``squall_controller_*``,
``squall_invoker_*``), so one page can carry a controller's and an invoker's families.

``/metrics`` needs no authentication, like OpenWhisk's controller metrics: it names no
namespace, action or activation (kinds, statuses and invoker ids only). Keep it off the
public side of nginx (``deploy/nginx/`` refuses it) and scrape each process directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PATH = "/metrics"


class MetricFamilies(Protocol):
    """One component's metric families.

    Guarantees:

    - ``registry`` is the component's own registry; collecting it never blocks on I/O
      and is safe on the event loop at any time (custom collectors read in-memory state).
    - ``refresh`` brings figures that need an await up to date before a scrape; it never
      raises (a figure it cannot get is left out of the page, not reported stale) and
      returns within a bounded time.
    """

    @property
    def registry(self) -> CollectorRegistry: ...

    async def refresh(self) -> None: ...


async def exposition(sources: Sequence[MetricFamilies]) -> bytes:
    """The text page of every source's families, refreshed first."""
    await asyncio.gather(*(s.refresh() for s in sources))
    return b"".join(generate_latest(s.registry) for s in sources)


def metrics_routes(*sources: MetricFamilies) -> list[BaseRoute]:
    """``GET /metrics`` serving ``sources``, to mount on any Starlette app."""

    async def endpoint(_request: Request) -> Response:
        return Response(await exposition(sources), media_type=CONTENT_TYPE)

    return [Route(PATH, endpoint, methods=["GET"])]


def metrics_app(*sources: MetricFamilies) -> ASGIApp:
    """A small ASGI app that serves only ``GET /metrics`` for ``sources`` (for a process
    with no REST API of its own, such as a cluster invoker)."""
    return Starlette(routes=metrics_routes(*sources))
