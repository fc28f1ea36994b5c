"""Sequences: validation when one is stored, and running one (OpenWhisk's semantics).

Stored (PUT): the caller must be entitled to every direct component (403, the same for a
missing and a private one of another namespace); then, with OpenWhisk's messages and
400s: at most ``sequence_max_length`` components, at least one, every component (nested
sequences inlined) existing, no sequence reaching itself, and at most
``sequence_max_length`` primitive actions once inlined.

Run (:func:`run_sequence`, driven by the composer): each component's result is the next
one's input; the first result with an ``error`` field (application or developer error)
ends it; nested sequences run inline and share the count of primitive actions, which
is checked against the limit again at run time (a component may have changed since).
A component that no longer resolves ends it with "Sequence component does not exist.".
Components are resolved in the namespace of the sequence that lists them: its owner
was entitled to them when it was stored.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from squall.controller.core import Controller
from squall.controller.entitlement import resolve_action
from squall.entities.action import Action
from squall.entities.activation import (
    APPLICATION_ERROR,
    SUCCESS,
    ActivationResponse,
)
from squall.entities.names import EntityPath
from squall.entities.sequence import (
    COMPONENT_MISSING,
    CYCLIC,
    NO_COMPONENT,
    SEQUENCE_FAILED,
    TOO_LONG,
    SequenceExec,
)
from squall.errors import BadRequest, Forbidden, NotFound

if TYPE_CHECKING:
    from squall.controller.composition import Budget, Composer, Run, Trace


def retrieve_timeout_message(activation_id: str) -> str:
    return f"Timeout reached when retrieving activation {activation_id} for sequence component."


def _app_error(message: str) -> ActivationResponse:
    return ActivationResponse.of(APPLICATION_ERROR, {"error": message})


# -- when stored --------------------------------------------------------------------------


async def entitle_components(ctl: Controller, caller_ns: str, exec_: SequenceExec) -> None:
    """403 unless the caller may invoke every direct component. Own unpackaged actions
    need no look-up (existence is checked where it matters); a missing component of
    another namespace is a 403 like a private one, so existence never leaks."""
    for path in exec_.components:
        if path.namespace == caller_ns and not path.package:
            continue
        with contextlib.suppress(NotFound):
            await resolve_action(ctl, caller_ns, path, invoking=False)


async def check_sequence(ctl: Controller, action: Action, body: object) -> None:
    """Validate a sequence about to be stored (a no-op for code actions and for updates
    that do not set ``exec``). Raises 403 / 400 as described in the module docstring."""
    exec_ = action.exec
    if not isinstance(exec_, SequenceExec):
        return
    if not (isinstance(body, dict) and body.get("exec") is not None):
        return  # an update that keeps its components is not checked again (OpenWhisk)
    owner = action.path.namespace
    await entitle_components(ctl, owner, exec_)
    limit = ctl.settings.sequence_max_length
    if len(exec_.components) > limit:
        raise BadRequest(TOO_LONG)
    if not exec_.components:
        raise BadRequest(NO_COMPONENT)
    await _count_actions(ctl, owner, exec_.components, (action.path,), limit)


async def _count_actions(
    ctl: Controller,
    owner: str,
    components: tuple[EntityPath, ...],
    ancestry: tuple[EntityPath, ...],
    allowed: int,
) -> int:
    """The primitive actions of ``components`` with nested sequences inlined; 400 on a
    missing component, on reaching a sequence of ``ancestry`` (a cycle), or as soon as
    the count passes ``allowed`` (which also bounds the work)."""
    total = 0
    for path in components:
        # Before the look-up, as OpenWhisk: a new sequence naming itself is a cycle, not
        # a missing component.
        if path in ancestry:
            raise BadRequest(CYCLIC)
        try:
            component = await resolve_action(ctl, owner, path, invoking=False)
        except (NotFound, Forbidden):
            raise BadRequest(COMPONENT_MISSING) from None
        if component.path in ancestry:
            raise BadRequest(CYCLIC)
        if isinstance(component.exec, SequenceExec):
            total += await _count_actions(
                ctl,
                component.path.namespace,
                component.exec.components,
                (*ancestry, component.path),
                allowed - total,
            )
        else:
            total += 1
        if total > allowed:
            raise BadRequest(TOO_LONG)
    return total


# -- when run -----------------------------------------------------------------------------


def _has_error(response: ActivationResponse) -> bool:
    return isinstance(response.result, dict) and "error" in response.result


async def run_sequence(
    composer: Composer, run: Run, payload: dict[str, Any], budget: Budget, trace: Trace
) -> ActivationResponse:
    """Run the components of ``run.action`` in order; the response that ends the
    sequence. Step ids, durations and memory go into ``trace`` as they complete."""
    exec_ = run.action.exec
    if not isinstance(exec_, SequenceExec):
        raise TypeError(f"{run.action.path} is not a sequence")
    owner = run.action.path.namespace
    response = ActivationResponse.of(SUCCESS, payload)
    for path in exec_.components:
        current = response.result
        if not isinstance(current, dict):
            # A JSON array cannot be the next action's arguments (OpenWhisk fails too).
            return ActivationResponse.whisk_error(SEQUENCE_FAILED)
        try:
            component = await composer.resolve(owner, path)
        except (NotFound, Forbidden):
            return _app_error(COMPONENT_MISSING)
        if isinstance(component.exec, SequenceExec):
            # A nested sequence counts its own primitive actions into the same budget.
            done = await composer.nested(run, component, current, budget)
        else:
            if budget.actions >= composer.limit:
                return _app_error(TOO_LONG)
            budget.actions += 1
            if composer.handles(component):  # a conductor action: a composition
                done = await composer.nested(run, component, current)
            else:
                done = await composer.step(run, component, current)
        if done.record is None:
            trace.logs.append(done.activation_id)
            return ActivationResponse.whisk_error(retrieve_timeout_message(done.activation_id))
        trace.add(done.record)
        # A component's response becomes the sequence's if it is the last (with its
        # ``size``, as OpenWhisk passes the whole response on).
        response = done.record.response
        if _has_error(response):
            break
    return response
