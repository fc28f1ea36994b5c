"""``/namespaces/{ns}/rules``: CRUD and enable/disable.

A rule's status lives in its trigger's ``rules`` map (as in OpenWhisk), so firing a
trigger needs one read; the rule document keeps the names of trigger and action.
"""

from __future__ import annotations

from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller.catalog import Catalog
from squall.controller.core import Controller, caller
from squall.controller.entitlement import resolve_action
from squall.controller.http import JSONResponse, list_window, query_bool, read_entity, read_json
from squall.controller.routes.common import find, require_overwrite
from squall.entities.names import EntityPath, check_name
from squall.entities.rule import ACTIVE, INACTIVE, Rule
from squall.entities.trigger import Trigger
from squall.errors import BadRequest, Forbidden, NotFound

MAX_RULE_BYTES = 1024 * 1024 + 64 * 1024
TRIGGER_MISSING_ON_STATUS = "Only rules with existing triggers can be activated"
STATUS_CHANGED_TYPE = "text/plain; charset=UTF-8"


async def _with_status(catalog: Catalog, rule: Rule) -> Rule:
    trigger = await find(catalog, Trigger, rule.trigger)
    entry = trigger.rules.get(rule.key) if trigger else None
    return replace(rule, status=entry["status"] if entry else INACTIVE)


async def _check_references(ctl: Controller, caller_ns: str, rule: Rule) -> Trigger:
    """The rule's trigger, if the caller may use both it and the action.

    As in OpenWhisk, entitlement comes first: a trigger of another namespace, or an
    action there outside a published package, is 403 whether or not it exists. Then a
    missing trigger or action is 400 with its fully qualified name (trigger first).
    """
    if rule.trigger.namespace != caller_ns:
        raise Forbidden()  # triggers are never shared; the rule would write into it
    try:
        # Through bindings and published packages; a check, not an invoke.
        await resolve_action(ctl, caller_ns, rule.action, invoking=False)
        action_missing = False
    except NotFound:
        action_missing = True
    trigger = await find(ctl.catalog, Trigger, rule.trigger)
    if trigger is None:
        raise BadRequest(f"trigger {rule.trigger.fqn} does not exist")
    if action_missing:
        raise BadRequest(f"action {rule.action.fqn} does not exist")
    return trigger


async def list_rules(request: Request) -> Response:
    ctl, _, namespace = await caller(request)
    if query_bool(request, "count"):
        return JSONResponse({"rules": await ctl.catalog.count(Rule, namespace)})
    skip, limit = list_window(request, "rules")
    rules = await ctl.catalog.list(Rule, namespace, skip=skip, limit=limit)
    return JSONResponse([(await _with_status(ctl.catalog, r)).to_json() for r in rules])


async def rule_entity(request: Request) -> Response:
    ctl, identity, namespace = await caller(request)
    catalog = ctl.catalog
    path = EntityPath(namespace, "", check_name(request.path_params["name"]))
    if request.method == "GET":
        return JSONResponse((await _with_status(catalog, await catalog.get(Rule, path))).to_json())
    if request.method == "DELETE":
        rule = await catalog.get(Rule, path)
        trigger = await find(catalog, Trigger, rule.trigger)
        if trigger is not None and rule.key in trigger.rules:
            await catalog.put(trigger.with_rule(rule.key, None), create=False)
        await catalog.delete(rule)
        return JSONResponse(replace(rule, status=INACTIVE).to_json())
    if request.method == "POST":
        return await _set_status(catalog, request, path)
    body = await read_entity(request, MAX_RULE_BYTES)
    existing = await find(catalog, Rule, path)
    if existing is None:
        rule = Rule.create(path, body)
        trigger = await _check_references(ctl, identity.namespace, rule)
        stored = await catalog.put(rule, create=True)
        await catalog.put(trigger.with_rule(rule.key, rule.trigger_entry()), create=False)
        return JSONResponse(replace(stored, status=ACTIVE).to_json())
    require_overwrite(request)
    current = await _with_status(catalog, existing)
    rule = current.update(body)
    trigger = await _check_references(ctl, identity.namespace, rule)
    stored = await catalog.put(rule, create=False)
    if rule.trigger != existing.trigger:
        old = await find(catalog, Trigger, existing.trigger)
        if old is not None:
            await catalog.put(old.with_rule(rule.key, None), create=False)
    await catalog.put(trigger.with_rule(rule.key, rule.trigger_entry()), create=False)
    return JSONResponse(replace(stored, status=rule.status).to_json())


async def _set_status(catalog: Catalog, request: Request, path: EntityPath) -> Response:
    body = await read_json(request, MAX_RULE_BYTES, empty={})
    status = body.get("status") if isinstance(body, dict) else None
    if status not in (ACTIVE, INACTIVE):
        raise BadRequest(
            "The request content was malformed:\nstatus must be 'active' or 'inactive'."
        )
    rule = await catalog.get(Rule, path)
    trigger = await find(catalog, Trigger, rule.trigger)
    if trigger is None:
        raise NotFound(TRIGGER_MISSING_ON_STATUS)
    entry = trigger.rules.get(rule.key)
    if entry is None or entry.get("status") != status:
        await catalog.put(
            trigger.with_rule(rule.key, replace(rule, status=status).trigger_entry()),
            create=False,
        )
    # OpenWhisk completes with the bare status, which pekko-http renders as the status's
    # reason phrase in plain text (clients print it: aio's "Rule Enabled \"OK\"").
    return Response("OK", 200, media_type=STATUS_CHANGED_TYPE)


ROUTES = [
    Route("/api/v1/namespaces/{namespace}/rules", list_rules, methods=["GET"]),
    Route(
        "/api/v1/namespaces/{namespace}/rules/{name}",
        rule_entity,
        methods=["GET", "PUT", "DELETE", "POST"],
    ),
]
