"""The operator's view: the platform's own figures, for the system namespace only.

OpenWhisk's administrative namespace is ``whisk.system``; a session of that namespace
(``squall admin user create whisk.system`` gives it a key) sees, besides its own
activations, the invokers and their health and what ``/metrics`` reports: containers by
kind and state, memory reserved against capacity, the invokers' queue lengths,
invocations by outcome and throttled requests by limit. The figures are read from the
same metric families the Prometheus page serves (this controller's, and in standalone
its invoker's), so both always agree; they name no namespace, action or activation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from squall.metrics.exposition import MetricFamilies

OPERATOR_NAMESPACE = "whisk.system"

# Family name (as collected, counters without "_total") → the JSON key it is shown as.
FAMILIES = {
    "squall_invoker_containers": "containers",
    "squall_invoker_memory_reserved_bytes": "memoryReserved",
    "squall_invoker_memory_capacity_bytes": "memoryCapacity",
    "squall_controller_invoker_queue_length": "queues",
    "squall_controller_invocations": "invocations",
    "squall_controller_throttled_requests": "throttled",
}


async def platform(sources: Sequence[MetricFamilies]) -> dict[str, list[dict[str, Any]]]:
    """The operator's figures: per shown family, its samples as ``{labels, value}``."""
    for source in sources:
        await source.refresh()
    out: dict[str, list[dict[str, Any]]] = {key: [] for key in FAMILIES.values()}
    for source in sources:
        for family in source.registry.collect():
            key = FAMILIES.get(family.name)
            if key is None:
                continue
            for sample in family.samples:
                # Counters also carry a "_created" sample: only the count is a figure.
                if sample.name.endswith("_created"):
                    continue
                out[key].append({"labels": dict(sample.labels), "value": sample.value})
    return out
