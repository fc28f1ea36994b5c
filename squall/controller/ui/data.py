"""The JSON the dashboard page polls, for the signed-in namespace only.

Every function takes the namespace from the session, never from the request, so a page
can only ever show its own namespace's activations.
"""

from __future__ import annotations

from typing import Any

from squall.controller.refusals import Refusals
from squall.entities.activation import PENDING, Activation, rest_json
from squall.errors import NotFound
from squall.store.contracts import ActivationQuery, ActivationStore

MINUTE_MS = 60_000
# The windows the page offers, in minutes (figures are always per minute).
WINDOWS = (15, 60, 360, 1440)
STATUSES = (
    "success",
    "application error",
    "action developer error",
    "whisk internal error",
    PENDING,
)
LIST_LIMIT = 50
# A status filter is applied to pages of the newest records; it looks at this many at
# most, so a rare status costs a bounded scan (the page says "none in the newest N").
STATUS_SCAN = 2000
_PAGE = 200
# The kind of sequences and compositions (conductor actions): their record's ``logs``
# are the ids of their steps' activations.
COMPOSITIONS = ("sequence",)


def _duration(record: Activation) -> int | None:
    duration = record.duration
    return None if record.pending or not isinstance(duration, int) else duration


def row(record: Activation) -> dict[str, Any]:
    """One line of the activations list."""
    return {
        "activationId": record.activation_id,
        "name": record.annotation("path") or record.name,
        "status": record.response.status,
        "start": record.start,
        "duration": _duration(record),
        "initTime": record.annotation("initTime"),
        "waitTime": record.annotation("waitTime"),
        "kind": record.annotation("kind"),
    }


async def summary(
    store: ActivationStore,
    namespace: str,
    now: int,
    minutes: int,
    refusals: Refusals | None = None,
) -> Any:
    """The per-minute figures of the last ``minutes`` (whole minutes, up to ``now``), and
    the requests ``refusals`` counted as throttled in them."""
    upto = now
    since = now - now % MINUTE_MS - (minutes - 1) * MINUTE_MS
    stats = await store.stats(ActivationQuery(namespace, since=since, upto=upto), MINUTE_MS)
    throttled = [] if refusals is None else refusals.recent(namespace, since)
    return {
        "namespace": namespace,
        "since": since,
        "upto": upto,
        **stats.to_json(),
        "throttled": [{"start": m, "limit": limit, "count": n} for m, limit, n in throttled],
    }


async def activations(
    store: ActivationStore,
    namespace: str,
    *,
    name: str | None,
    status: str | None,
    since: int | None,
    upto: int | None,
    limit: int = LIST_LIMIT,
) -> dict[str, Any]:
    """The newest activations matching the filters, as list rows; ``complete`` is False
    when a status filter stopped after :data:`STATUS_SCAN` records."""
    if status is None:
        query = ActivationQuery(namespace, name=name, since=since, upto=upto, limit=limit)
        return {"activations": [row(r) for r in await store.list(query)], "complete": True}
    found: list[dict[str, Any]] = []
    skip = 0
    while len(found) < limit and skip < STATUS_SCAN:
        query = ActivationQuery(
            namespace, name=name, since=since, upto=upto, skip=skip, limit=_PAGE
        )
        page = await store.list(query)
        found.extend(row(r) for r in page if r.response.status == status)
        skip += len(page)
        if len(page) < _PAGE:
            return {"activations": found[:limit], "complete": True}
    return {"activations": found[:limit], "complete": len(found) >= limit}


async def detail(store: ActivationStore, namespace: str, activation_id: str) -> dict[str, Any]:
    """One activation: the record as the REST API shows it, its timing, its steps."""
    record = await store.get(namespace, activation_id)
    init = record.annotation("initTime")
    duration = _duration(record)
    timing = {
        "wait": record.annotation("waitTime"),
        "init": init,
        # OpenWhisk's duration includes the initialisation of a cold start.
        "run": None if duration is None else duration - (init or 0),
    }
    steps: list[dict[str, Any]] = []
    if record.annotation("kind") in COMPOSITIONS:
        for step_id in record.logs:
            try:
                steps.append(row(await store.get(namespace, step_id)))
            except NotFound:
                steps.append({"activationId": step_id, "status": "not found"})
    return {"activation": rest_json(record), "timing": timing, "steps": steps}
