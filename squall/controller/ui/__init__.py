"""What people look at in a browser: ``/dashboard`` (a namespace's activations as plots
and lists, behind a session cookie) and ``/api/v1/docs`` (the API reference).

Modules: ``assets`` (the files the pages load, Squall's own and the vendored libraries),
``session`` (signed cookies), ``pages`` (HTML), ``data`` (the JSON the page polls),
``operator`` (the platform's figures, for the system namespace), ``dashboard`` (routes),
``docs`` (the API reference page).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute

from squall.config import Settings
from squall.controller.ui import assets, docs
from squall.controller.ui.dashboard import Dashboard
from squall.controller.ui.session import Sessions
from squall.metrics.exposition import MetricFamilies


def routes(settings: Settings, metrics: Sequence[MetricFamilies]) -> list[BaseRoute]:
    """The browser pages' routes, with sessions signed as :class:`Sessions` says; the
    operator's view shows ``metrics`` (the families ``/metrics`` serves)."""
    return [
        *docs.ROUTES,
        *assets.ROUTES,
        *Dashboard(Sessions.for_settings(settings), metrics).routes(),
    ]
