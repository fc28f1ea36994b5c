"""The composer: sequences and conductor actions run by the controller, step by step.

Neither a sequence nor a composition (the run of a conductor action) goes to an invoker
whole. The activator hands them here (:class:`~squall.controller.activator.Composer`);
the steps — the primitive actions — go through ``Activator.invoke_primitive`` like any
invoke; ``sequences.py`` and ``conductors.py`` decide which step comes next.

Guarantees:

- An accepted sequence or composition has a record at once (``response.status``
  ``"pending"``, stored with the message that runs it again after a crash and with
  :attr:`Composer.owner`, this controller's id and incarnation), marked
  started when its task begins, before its first step; replaced exactly once by its
  final record: the response of the step
  that ended it, the step ids as ``logs``, the summed step durations as ``duration``,
  annotations ``topmost``, ``path``, ``kind: "sequence"``, ``limits`` (the largest step
  memory), ``conductor: true`` for a composition, ``causedBy`` when nested.
- Each step waits as long as the step may run (its time limit plus a minute, as in
  OpenWhisk), never the HTTP wait; its record carries ``cause`` = the enclosing
  activation's id and ``causedBy: "sequence"``.
- Nested sequences and compositions run inline in their parent's task and store their
  own records (``topmost: false``, ``cause`` = the parent).
- Steps and nested runs get no pending record: their ids reach nobody before they end
  (the parent lists them in its logs at its own end), so it would only cost a store
  write per step. Their records exist once they have ended.
- A topmost run lives in a task the composer keeps until it ends, whether the caller
  waits or not: the HTTP wait only chooses between answering the record and 202.
- :meth:`Composer.close` gives running tasks ``grace_s`` to finish, then cancels the
  rest; every unfinished record (nested ones too) then ends as a whisk internal error.

Concurrency: everything runs on the controller's event loop; ``_tasks`` is only touched
there, so it needs no lock.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from msgspec import structs

from squall.bus.messages import ActivationMessage
from squall.controller.auth import Identity
from squall.controller.conductors import COMPOSITION_FAILED, run_composition
from squall.controller.core import Controller
from squall.controller.entitlement import resolve_action
from squall.controller.invocation import Invocation, InvocationRequest
from squall.controller.sequences import entitle_components, run_sequence
from squall.entities.action import Action
from squall.entities.activation import (
    Activation,
    ActivationResponse,
    new_activation_id,
    now_ms,
    pending_record,
)
from squall.entities.names import EntityPath
from squall.entities.sequence import SEQUENCE_FAILED, SEQUENCE_KIND, SequenceExec
from squall.errors import ServiceUnavailable

log = logging.getLogger("squall.controller.composition")

# OpenWhisk's causedBy value for the steps of sequences and compositions alike.
STEP_CAUSE = "sequence"
# A step's result is awaited for its own time limit plus this (OpenWhisk: one minute).
STEP_WAIT_MARGIN_MS = 60_000
DEFAULT_GRACE_S = 5.0


def shut_down_message(conductor: bool) -> str:
    what = "composition" if conductor else "sequence"
    return f"The controller was shut down before the {what} completed."


@dataclass
class Budget:
    """Steps taken so far, shared by nested runs of the same kind (OpenWhisk's
    accounting): ``actions`` counts the primitive actions of a tree of sequences;
    ``components`` and ``conductors`` count the runs of a tree of compositions. A
    sequence inside a composition (or the reverse) starts a fresh budget."""

    actions: int = 0
    components: int = 0
    conductors: int = 0


@dataclass
class Trace:
    """What a run has accumulated: step ids (its logs), summed durations, largest memory."""

    logs: list[str] = field(default_factory=list)
    duration: int = 0
    max_memory: int | None = None

    def add(self, record: Activation) -> None:
        self.logs.append(record.activation_id)
        self.duration += record.duration if isinstance(record.duration, int) else 0
        limits = record.annotation("limits")
        memory = limits.get("memory") if isinstance(limits, dict) else None
        if isinstance(memory, int):
            self.max_memory = max(memory, self.max_memory or memory)


@dataclass(frozen=True, slots=True)
class Run:
    """One sequence or composition activation."""

    identity: Identity
    action: Action
    activation_id: str
    txid: str
    cause: str | None
    topmost: bool
    start: int

    @property
    def conductor(self) -> bool:
        return not isinstance(self.action.exec, SequenceExec)

    def annotations(self, memory: int | None) -> list[dict[str, Any]]:
        """Every annotation but ``path`` (``pending_record`` puts that first)."""
        out: list[dict[str, Any]] = [
            {"key": "topmost", "value": self.topmost},
            {"key": "kind", "value": SEQUENCE_KIND},
        ]
        if self.conductor:
            out.append({"key": "conductor", "value": True})
        if not self.topmost:
            out.append({"key": "causedBy", "value": STEP_CAUSE})
        limits = {**self.action.limits.to_json(), "memory": memory or self.action.limits.memory}
        out.append({"key": "limits", "value": limits})
        return out

    def pending(self) -> Activation:
        return pending_record(
            namespace=self.identity.namespace,
            subject=self.identity.subject,
            activation_id=self.activation_id,
            name=self.action.path.name,
            path=self.action.path.fqn.lstrip("/"),
            version=self.action.version,
            accepted_ms=self.start,
            annotations=self.annotations(None),
            cause=self.cause,
        )

    def record(self, response: ActivationResponse, trace: Trace) -> Activation:
        pending = self.pending()
        return structs.replace(
            pending,
            end=max(now_ms(), self.start),
            duration=trace.duration,
            response=response,
            logs=list(trace.logs),
            annotations=[pending.annotations[0], *self.annotations(trace.max_memory)],
        )


class Composer:
    """Runs sequences and conductor actions (see the module docstring)."""

    def __init__(self, ctl: Controller, grace_s: float = DEFAULT_GRACE_S) -> None:
        self._ctl = ctl
        self._grace_s = grace_s
        self._tasks: set[asyncio.Task[Activation]] = set()
        self._closed = False
        #: The most primitive actions a sequence tree, or components a composition, runs.
        self.limit = ctl.settings.sequence_max_length
        #: Who runs this composer's topmost runs, stored with their pending records:
        #: ``<controller id>/<incarnation>``, a fresh incarnation per process, so a
        #: restart of the same controller id can tell what an earlier run of it left
        #: (controller/restart.py) from what it runs itself.
        self.owner = f"{ctl.settings.controller_id}/{secrets.token_hex(6)}"

    def handles(self, action: Action) -> bool:
        return isinstance(action.exec, SequenceExec) or action.conductor

    # -- topmost ----------------------------------------------------------------------

    async def invoke(self, request: InvocationRequest) -> Invocation:
        """Accept a topmost run and answer like an action's invoke: the final record if
        it ends within ``wait_ms`` (blocking), else only the id while it runs on.

        A sequence whose direct components the caller may not invoke is refused with
        403 before anything is recorded, as OpenWhisk does."""
        if self._closed:
            raise ServiceUnavailable()
        identity, action, txid = request.identity, request.action, request.txid
        cause = request.cause
        if isinstance(action.exec, SequenceExec):
            await entitle_components(self._ctl, identity.namespace, action.exec)
        run = Run(identity, action, new_activation_id(), txid, cause, True, now_ms())
        # With what it takes to run it after a crash, if it never started (see _execute).
        message = ActivationMessage(
            transid=txid,
            activation_id=run.activation_id,
            namespace=identity.namespace,
            subject=identity.subject,
            action=action.path.fqn,
            revision=action.rev,
            content=request.payload,
            blocking=request.blocking,
            controller=self._ctl.settings.controller_id,
            accepted_ms=run.start,
            cause=cause,
        )
        await self._ctl.activations.put_pending(run.pending(), message.to_bytes(), self.owner)
        task = self._spawn(run, request.payload)
        if not request.blocking:
            return Invocation(run.activation_id, None)
        # asyncio.wait neither cancels the task on timeout nor when this request is
        # cancelled (client gone): the run always goes on to its final record.
        done, _ = await asyncio.wait({task}, timeout=request.wait_ms / 1000)
        if not done or task.cancelled() or task.exception() is not None:
            return Invocation(run.activation_id, None)
        return Invocation(run.activation_id, task.result())

    def resume(self, identity: Identity, action: Action, message: ActivationMessage) -> None:
        """Run again a topmost run accepted before a restart that never started: the same
        id, payload, cause and acceptance time (``message``, as :meth:`invoke` stored it
        with its pending record); it runs on in a task of its own, nobody waits for it."""
        if self._closed:
            raise ServiceUnavailable()
        run = Run(
            identity,
            action,
            message.activation_id,
            message.transid,
            message.cause,
            True,
            message.accepted_ms,
        )
        self._spawn(run, message.content)

    def _spawn(self, run: Run, payload: dict[str, Any]) -> asyncio.Task[Activation]:
        task = asyncio.create_task(self._execute(run, payload, Budget()), name=run.activation_id)
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Activation]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("composition %s failed", task.get_name(), exc_info=task.exception())

    # -- steps (for sequences.py and conductors.py) -----------------------------------

    async def resolve(self, caller_ns: str, path: EntityPath) -> Action:
        """The action at ``path`` as ``caller_ns`` may see it (403 / 404 otherwise)."""
        return await resolve_action(self._ctl, caller_ns, path)

    async def step(self, parent: Run, action: Action, payload: dict[str, Any]) -> Invocation:
        """Run a primitive action as a step of ``parent``; no record means its result was
        not back within its time limit plus a minute."""
        request = InvocationRequest(
            identity=parent.identity,
            action=action,
            payload=payload,
            blocking=True,
            wait_ms=action.limits.timeout + STEP_WAIT_MARGIN_MS,
            txid=parent.txid,
            cause=parent.activation_id,
            caused_by=STEP_CAUSE,
        )
        # No pending record: see the module docstring.
        return await self._ctl.activator.invoke_primitive(request, record_pending=False)

    async def nested(
        self, parent: Run, action: Action, payload: dict[str, Any], budget: Budget | None = None
    ) -> Invocation:
        """Run a sequence or conductor action as a step of ``parent``; its final record.
        ``budget`` is the parent's when both are of a kind, else None (a fresh one)."""
        run = Run(
            parent.identity,
            action,
            new_activation_id(),
            parent.txid,
            parent.activation_id,
            False,
            now_ms(),
        )
        record = await self._execute(run, payload, budget or Budget())
        return Invocation(run.activation_id, record)

    async def _execute(self, run: Run, payload: dict[str, Any], budget: Budget) -> Activation:
        """Run to the end and store the final record (also when cancelled, then re-raise).

        A topmost run is marked started first (``ActivationStore.start``, before its first
        step is sent): after a crash, a run that never got there runs again, one that did
        ends with an error (its steps may have run). Nested runs are part of theirs."""
        trace = Trace(max_memory=run.action.limits.memory if run.conductor else None)
        if run.topmost and not await self._ctl.activations.start(run.pending()):
            log.warning("%s not run: it started or ended before", run.activation_id)
            return await self._ctl.activations.get(run.identity.namespace, run.activation_id)
        try:
            if run.conductor:
                response = await run_composition(self, run, payload, budget, trace)
            else:
                response = await run_sequence(self, run, payload, budget, trace)
        except asyncio.CancelledError:
            failed = ActivationResponse.whisk_error(shut_down_message(run.conductor))
            await self._ctl.activations.put(run.record(failed, trace))
            raise
        except Exception:
            # OpenWhisk's answer to any failure of the machinery (a store or bus error,
            # no invoker): the run ends as a whisk error with the steps it took.
            log.exception("%s failed", run.activation_id)
            message = COMPOSITION_FAILED if run.conductor else SEQUENCE_FAILED
            response = ActivationResponse.whisk_error(message)
        record = run.record(response, trace)
        await self._ctl.activations.put(record)
        return record

    # -- shutdown ---------------------------------------------------------------------

    async def close(self) -> None:
        """Refuse new runs; give running ones ``grace_s``; cancel the rest (each records
        itself as a whisk internal error before its task ends)."""
        self._closed = True
        running = list(self._tasks)
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=self._grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
