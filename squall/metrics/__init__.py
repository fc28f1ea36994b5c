"""Prometheus metrics of controllers and invokers.

Each component keeps its families in a registry of its own (``controller.py``,
``invoker.py``); ``exposition.py`` serves one or several of them as ``GET /metrics`` in
the text format. The controller's app serves its own families (and, in standalone, the
invoker's too); a cluster invoker mounts :func:`metrics_app` or :func:`metrics_routes`
for its :class:`InvokerMetrics` on its small HTTP server.
"""

from squall.metrics.controller import ControllerMetrics
from squall.metrics.exposition import MetricFamilies, exposition, metrics_app, metrics_routes
from squall.metrics.invoker import InvokerMetrics

__all__ = [
    "ControllerMetrics",
    "InvokerMetrics",
    "MetricFamilies",
    "exposition",
    "metrics_app",
    "metrics_routes",
]
