"""``/whisk.system/alarms``: the package, its feed actions, and running them in-process.

Why the feed actions run inside the controller instead of a sandbox: in OpenWhisk they
are Node.js actions that call a separate alarms service over HTTP, which keeps its own
database. Here the provider *is* part of the platform and its state lives in the store,
so a sandboxed action would only forward to the controller — a runtime process, a socket
and an HTTP hop that add nothing but latency and a failure mode. The actions therefore
have the kind :data:`BUILTIN_KIND`, which no user may create (it is not in the runtime
manifest) and which only :class:`FeedActions` runs: the activator hands it any action of
that kind in ``/whisk.system/alarms`` (also through a binding of that package). Every run
still records a normal activation (in the caller's namespace, ``path`` and ``kind``
annotations, the result or ``{"error": ...}`` as an application error), so the npm
client's ``feeds.create`` and ``wsk trigger create --feed`` see exactly what they expect;
a rule or a sequence step that names a feed action gets the same run.

:func:`install` creates or refreshes the package at start-up: published, so every
namespace may use (and bind) it; the actions carry the ``feed`` annotation, so a GET of
the package lists them under ``feeds``.
"""

from __future__ import annotations

import logging
from typing import Any

from squall.catalog.install import install_entity
from squall.controller.catalog import Catalog
from squall.controller.core import Controller
from squall.controller.invocation import Invocation, InvocationRequest
from squall.entities import params
from squall.entities.action import Action
from squall.entities.activation import (
    APPLICATION_ERROR,
    SUCCESS,
    ActivationResponse,
    final_record,
    new_activation_id,
    now_ms,
)
from squall.entities.kinds import CodeExec
from squall.entities.names import EntityPath
from squall.entities.package import Package
from squall.errors import SquallError
from squall.feeds.alarm import ALARM, FEEDS, INTERVAL, ONCE, FeedError
from squall.feeds.lifecycle import Lifecycle

log = logging.getLogger("squall.feeds")

SYSTEM_NAMESPACE = "whisk.system"
PACKAGE = "alarms"
BUILTIN_KIND = "builtin"


def _parameters(*names: tuple[str, bool]) -> list[dict[str, Any]]:
    return [{"name": name, "required": required} for name, required in names]


# The annotations OpenWhisk's installCatalog.sh gives the package and its feed actions.
PACKAGE_ANNOTATIONS: params.KeyValues = [
    {"key": "description", "value": "Alarms and periodic utility"},
    {"key": "parameters", "value": _parameters(("trigger_payload", False))},
]
FEED_ANNOTATIONS: dict[str, params.KeyValues] = {
    ALARM: [
        {"key": "description", "value": "Fire trigger when alarm occurs"},
        {
            "key": "parameters",
            "value": _parameters(
                ("cron", True), ("timezone", False), ("startDate", False), ("stopDate", False)
            ),
        },
    ],
    ONCE: [
        {"key": "description", "value": "Fire trigger once when alarm occurs"},
        {"key": "parameters", "value": _parameters(("date", True), ("deleteAfterFire", False))},
    ],
    INTERVAL: [
        {"key": "description", "value": "Fire trigger at specified interval"},
        {
            "key": "parameters",
            "value": _parameters(("minutes", True), ("startDate", False), ("stopDate", False)),
        },
    ],
}


def feed_actions() -> list[Action]:
    """The three feed actions as they are stored."""
    return [
        Action(
            path=EntityPath(SYSTEM_NAMESPACE, PACKAGE, name),
            exec=CodeExec(kind=BUILTIN_KIND, code="", binary=False),
            annotations=[
                *FEED_ANNOTATIONS[name],
                {"key": "feed", "value": True},
                {"key": "exec", "value": BUILTIN_KIND},
            ],
        )
        for name in FEEDS
    ]


def package() -> Package:
    return Package(
        path=EntityPath(SYSTEM_NAMESPACE, "", PACKAGE),
        publish=True,
        annotations=list(PACKAGE_ANNOTATIONS),
    )


async def install(catalog: Catalog) -> None:
    """Create ``/whisk.system/alarms`` and its actions, or bring them up to date (a
    changed one is replaced with its patch version bumped; an unchanged one is left)."""
    await install_entity(catalog, package())
    for action in feed_actions():
        await install_entity(catalog, action)


class FeedActions:
    """Runs the alarms feed actions for the activator (its ``builtins``)."""

    def __init__(self, ctl: Controller, lifecycle: Lifecycle) -> None:
        self._ctl = ctl
        self._lifecycle = lifecycle

    def handles(self, action: Action) -> bool:
        path = action.path
        return (
            action.exec.kind == BUILTIN_KIND
            and path.namespace == SYSTEM_NAMESPACE
            and path.package == PACKAGE
            and path.name in FEEDS
        )

    async def invoke(self, request: InvocationRequest) -> Invocation:
        """Run the lifecycle event at once (it is a few store operations) and record it;
        the record is returned when ``blocking``, like a finished invoke. As a step of a
        sequence, the record carries ``cause`` and ``causedBy`` like any step's."""
        identity, action, txid = request.identity, request.action, request.txid
        activation_id = new_activation_id()
        start = now_ms()
        args = params.as_dict(action.parameters, init=False)
        args.update(request.payload)
        try:
            result = await self._lifecycle.handle(identity, action.path.name, args)
            response = ActivationResponse.of(SUCCESS, result)
        except FeedError as exc:
            response = ActivationResponse.of(APPLICATION_ERROR, {"error": exc.message})
        except SquallError as exc:
            log.error("feed %s failed [txid %s]: %s", action.path.fqn, txid, exc)
            response = ActivationResponse.whisk_error(exc.message)
        record = final_record(
            namespace=identity.namespace,
            name=action.path.name,
            subject=identity.subject,
            activation_id=activation_id,
            start=start,
            end=now_ms(),
            response=response,
            version=action.version,
            annotations=[
                {"key": "path", "value": action.path.fqn.lstrip("/")},
                {"key": "kind", "value": BUILTIN_KIND},
                {"key": "limits", "value": action.limits.to_json()},
                *([{"key": "causedBy", "value": request.caused_by}] if request.caused_by else []),
            ],
            cause=request.cause,
        )
        await self._ctl.activations.put(record)
        return Invocation(activation_id, record if request.blocking else None)
