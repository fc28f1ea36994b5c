"""Firing a trigger: every active rule's action invoked, one trigger activation recorded.

:func:`fire_trigger` serves ``POST /namespaces/{ns}/triggers/{name}`` and the built-in
alarms provider alike (which fires as the trigger's owner). Guarantees:

- The namespace's fires-per-minute throttle is counted first (429 over the limit), then
  the trigger is read (404 if missing).
- With no active rule nothing is invoked or recorded and the answer is None (the route
  answers 204), as in OpenWhisk.
- Otherwise each rule's action gets the trigger's parameters with the payload on top as
  its arguments, is invoked non-blocking as the caller with ``cause`` = the trigger's
  activation id, and the trigger's record is stored *before* its id is returned (so an
  accepted fire is never a 404). Rules are invoked concurrently: their pending records
  share one group commit.
- The record follows OpenWhisk's ``Triggers.scala``: name = the trigger's, ``response``
  a success whose ``result`` is the payload as fired (without the trigger's parameters),
  no annotations, and ``logs`` = one compact JSON string per rule of the trigger, in the
  order of its rules map: ``{"statusCode":0,"success":true,"activationId":...,"rule":
  "ns/r","action":"ns/a"}`` for an invoked action; ``statusCode`` 1 with ``error`` for
  an inactive rule (OpenWhisk's "Rule '...' is inactive, ..." text) and for an action the
  invoke refused (missing, not entitled, throttled, ``final`` parameters — the invoke
  API's message); ``statusCode`` 3 for an internal error. A rule never fails the fire.
- As in OpenWhisk, the record has ``end`` 0 and no ``duration``: a trigger does not
  run, so the REST API shows it without ``end`` and lists it without ``end``,
  ``duration`` or ``statusCode`` (how clients such as ``aio rt:activation:list`` tell a
  trigger's record from an action's).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from squall.controller.auth import Identity
from squall.controller.core import Controller
from squall.controller.entitlement import check_final, resolve_action
from squall.controller.invocation import InvocationRequest
from squall.entities import params
from squall.entities.activation import (
    APPLICATION_ERROR,
    SUCCESS,
    WHISK_ERROR,
    Activation,
    ActivationResponse,
    new_activation_id,
    now_ms,
)
from squall.entities.names import EntityPath
from squall.entities.rule import ACTIVE
from squall.entities.trigger import Trigger
from squall.errors import RequestError, SquallError

log = logging.getLogger("squall.controller.triggers")

# akka-http's default text for a 500, which OpenWhisk logs for an unexpected failure.
INTERNAL_ERROR = "There was an internal server error."


def inactive_rule_message(rule: str, action: str) -> str:
    return f"Rule '{rule}' is inactive, action '{action}' was not activated."


def rule_log_line(status_code: int, rule: str, action: str, outcome: str, value: str) -> str:
    """One rule's line of the trigger record; ``outcome`` is ``activationId`` or ``error``."""
    line = {
        "statusCode": status_code,
        "success": status_code == SUCCESS,
        outcome: value,
        "rule": rule,
        "action": action,
    }
    return orjson.dumps(line).decode()


def action_of(entry: dict[str, Any]) -> EntityPath:
    """The action of a rules-map entry: ``{"action": {"name": a, "path": "ns[/pkg]"}}``."""
    ref = entry["action"]
    namespace, _, package = str(ref["path"]).partition("/")
    return EntityPath(namespace, package, str(ref["name"]))


async def _activate(
    ctl: Controller,
    identity: Identity,
    rule: str,
    entry: dict[str, Any],
    args: dict[str, Any],
    txid: str,
    cause: str,
) -> str:
    path = action_of(entry)
    action_name = path.fqn.lstrip("/")
    if entry.get("status") != ACTIVE:
        message = inactive_rule_message(rule, action_name)
        return rule_log_line(APPLICATION_ERROR, rule, action_name, "error", message)
    try:
        # The same checks as POST /actions/{name} (OpenWhisk posts there for each rule).
        action = await resolve_action(ctl, identity.namespace, path)
        check_final(action, args)
        await ctl.throttles.admit_invoke(identity.namespace)
        invocation = await ctl.activator.invoke(
            InvocationRequest(
                identity=identity,
                action=action,
                payload=args,
                blocking=False,
                wait_ms=0,
                txid=txid,
                cause=cause,
            )
        )
    except RequestError as exc:
        return rule_log_line(APPLICATION_ERROR, rule, action_name, "error", exc.message)
    except SquallError as exc:
        log.error("rule %s: invoking %s failed [txid %s]: %s", rule, action_name, txid, exc)
        return rule_log_line(WHISK_ERROR, rule, action_name, "error", exc.message)
    except Exception:
        log.exception("rule %s: invoking %s failed [txid %s]", rule, action_name, txid)
        return rule_log_line(WHISK_ERROR, rule, action_name, "error", INTERNAL_ERROR)
    return rule_log_line(SUCCESS, rule, action_name, "activationId", invocation.activation_id)


async def fire_trigger(
    ctl: Controller,
    identity: Identity,
    path: EntityPath,
    payload: dict[str, Any],
    *,
    txid: str,
) -> str | None:
    """Fire the trigger at ``path`` as ``identity``; its activation id, or None when it
    has no active rule (see the module docstring for every guarantee)."""
    await ctl.throttles.admit_fire(identity.namespace)
    trigger = await ctl.catalog.get(Trigger, path)
    if not any(entry.get("status") == ACTIVE for entry in trigger.rules.values()):
        return None
    activation_id = new_activation_id()
    start = now_ms()
    args = params.as_dict(trigger.parameters)
    args.update(payload)
    activations = [
        # A copy each: nothing one invoke does to its arguments reaches another.
        _activate(ctl, identity, rule, entry, dict(args), txid, activation_id)
        for rule, entry in trigger.rules.items()
    ]
    # One rule is awaited directly: gather would add a task and loop iterations to the
    # most common case.
    lines = [await activations[0]] if len(activations) == 1 else await asyncio.gather(*activations)
    record = Activation(
        namespace=identity.namespace,
        name=trigger.path.name,
        subject=identity.subject,
        activation_id=activation_id,
        start=start,
        end=0,
        response=ActivationResponse.of(SUCCESS, payload),
        version=trigger.version,
        logs=list(lines),
    )
    await ctl.activations.put(record)
    return activation_id
