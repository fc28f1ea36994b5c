"""Compositions: the run of a conductor action (annotation ``conductor``), as OpenWhisk.

The conductor runs with the invoke's parameters. If its result names an ``action``, that
action runs with the result's ``params``, and the conductor runs again on the action's
result with the conductor's previous ``state`` merged on top — until a result has no
``action``: its ``params`` (or, without them, the whole result) is the composition's
result, with the status of that last conductor run. A non-object ``params`` is boxed as
``{"value": ...}`` and a non-object ``state`` as ``{"state": ...}``.

A step's error result goes back to the conductor, which decides (composer's try/catch);
a conductor's own error result has no ``action`` and so ends the composition. A next
action that cannot be parsed, exceeds the limit, is not accessible or does not exist is
not run: the conductor is run again on ``{"error": <OpenWhisk's message>}``.

Limits (OpenWhisk's): at most ``sequence_max_length`` component runs and
``2 * limit + 1`` conductor runs, shared by nested compositions; a nested sequence
counts as one component. The record's ``logs`` list every conductor and component run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from squall.entities.activation import APPLICATION_ERROR, ActivationResponse
from squall.entities.names import EntityPath, is_valid_name
from squall.entities.sequence import SequenceExec
from squall.errors import Forbidden, NotFound

if TYPE_CHECKING:
    from squall.controller.composition import Budget, Composer, Run, Trace

# OpenWhisk's messages (common/scala/.../http/ErrorResponse.scala).
COMPOSITION_TOO_LONG = "Too many actions in the composition."
COMPOSITION_FAILED = "Activation failure during composition."


def retrieve_timeout_message(activation_id: str) -> str:
    return f"Timeout reached when retrieving activation {activation_id} during composition."


def component_invalid_message(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return f"Failed to parse action name from json value {text} during composition."


def component_not_found_message(name: str) -> str:
    return f"Failed to resolve action with name '{name}' during composition."


def component_not_accessible_message(name: str) -> str:
    return f"Failed entitlement check for action with name '{name}' during composition."


def resolve_name(value: Any, namespace: str) -> EntityPath | None:
    """The action a conductor names, as OpenWhisk reads it: ``a`` and ``pkg/a`` are in
    ``namespace``; ``/ns/a``, ``/ns/pkg/a`` and ``ns/pkg/a`` are fully qualified; ``_``
    is ``namespace``. None for anything else (not a string, ``/a``, bad names)."""
    if not isinstance(value, str):
        return None
    parts = [p for p in value.split("/") if p]
    leading = value.startswith("/")
    if not 1 <= len(parts) <= 3 or (leading and len(parts) == 1):
        return None
    if not all(is_valid_name(p) for p in parts):
        return None
    if not leading and len(parts) < 3:
        parts = [namespace, *parts]
    owner = namespace if parts[0] == "_" else parts[0]
    if len(parts) == 3:
        return EntityPath(owner, parts[1], parts[2])
    return EntityPath(owner, "", parts[1])


def _boxed(fields: dict[str, Any], key: str, box: str) -> dict[str, Any] | None:
    if key not in fields:
        return None
    value = fields[key]
    return value if isinstance(value, dict) else {box: value}


async def run_composition(
    composer: Composer, run: Run, payload: dict[str, Any], budget: Budget, trace: Trace
) -> ActivationResponse:
    """Alternate conductor and component runs until the conductor finishes; the
    composition's response. Every run's id, duration and memory go into ``trace``."""
    namespace = run.identity.namespace
    arguments = payload
    state: dict[str, Any] | None = None
    while True:
        if budget.conductors > 2 * composer.limit:
            return ActivationResponse.of(APPLICATION_ERROR, {"error": COMPOSITION_TOO_LONG})
        budget.conductors += 1
        done = await composer.step(run, run.action, {**arguments, **(state or {})})
        if done.record is None:
            trace.logs.append(done.activation_id)
            return ActivationResponse.whisk_error(retrieve_timeout_message(done.activation_id))
        trace.add(done.record)
        response = done.record.response
        result = response.result
        if result is not None and not isinstance(result, dict):
            return ActivationResponse.whisk_error(COMPOSITION_FAILED)
        fields = result or {}
        params = _boxed(fields, "params", "value")
        state = _boxed(fields, "state", "state")
        if "action" not in fields:
            return ActivationResponse.of(response.code, fields if params is None else params)
        path = resolve_name(fields["action"], namespace)
        if path is None:
            arguments = {"error": component_invalid_message(fields["action"])}
            continue
        if budget.components >= composer.limit:
            arguments = {"error": COMPOSITION_TOO_LONG}
            continue
        name = path.fqn.lstrip("/")
        try:
            component = await composer.resolve(namespace, path)
        except Forbidden:
            arguments = {"error": component_not_accessible_message(name)}
            continue
        except NotFound:
            arguments = {"error": component_not_found_message(name)}
            continue
        params = params or {}
        if isinstance(component.exec, SequenceExec):
            budget.components += 1
            done = await composer.nested(run, component, params)
        elif composer.handles(component):  # a conductor: shares this composition's budget
            done = await composer.nested(run, component, params, budget)
        else:
            budget.components += 1
            done = await composer.step(run, component, params)
        if done.record is None:
            trace.logs.append(done.activation_id)
            return ActivationResponse.whisk_error(retrieve_timeout_message(done.activation_id))
        trace.add(done.record)
        result = done.record.response.result
        if result is not None and not isinstance(result, dict):
            return ActivationResponse.whisk_error(COMPOSITION_FAILED)
        arguments = result or {}
