"""Turning an invoke request into an ActivationMessage on the bus, and waiting for it.

The controller never calls an invoker: it publishes through the balancer and, for a
blocking invoke, waits for the completion the invoker sends back. Sequences and conductor
actions are not published whole: :meth:`Activator.invoke` hands them to the composer
(``controller/composition.py``), which runs their steps through
:meth:`Activator.invoke_primitive` — so every caller (API, rules, web actions) gets them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from squall.bus.messages import ActivationMessage
from squall.controller.auth import Identity
from squall.controller.balancer import LoadBalancer
from squall.controller.invocation import Invocation, InvocationRequest
from squall.controller.throttle import Throttles
from squall.controller.waiters import CompletionWaiters
from squall.entities.action import Action, pending_invocation
from squall.entities.activation import (
    Activation,
    ActivationResponse,
    ended,
    new_activation_id,
    now_ms,
)
from squall.errors import SquallError
from squall.metrics.controller import ACCEPTED, COMPLETED, FAILED, TIMEOUT, ControllerMetrics
from squall.store.contracts import ActivationStore


class Composer(Protocol):
    """Runs sequences and conductor actions (their steps through ``invoke_primitive``)."""

    @property
    def owner(self) -> str:
        """``<controller id>/<incarnation>``: stored with each topmost run's pending
        record; another process never has the same."""
        ...

    def handles(self, action: Action) -> bool:
        """True for a sequence or a conductor action."""
        ...

    async def invoke(self, request: InvocationRequest) -> Invocation:
        """Accept the run (its pending record stored) and answer like an action's invoke."""
        ...

    def resume(self, identity: Identity, action: Action, message: ActivationMessage) -> None:
        """Run again, in the background, a run accepted before a restart that never
        started (its id, payload and cause in ``message``, as stored when accepted)."""
        ...

    async def close(self) -> None:
        """Let running sequences and compositions finish, or record their failure."""
        ...


class BuiltinActions(Protocol):
    """Actions the controller runs itself instead of an invoker (the feed actions of the
    built-in ``/whisk.system/alarms``); each run records its own activation."""

    def handles(self, action: Action) -> bool:
        """True for an action of this kind."""
        ...

    async def invoke(self, request: InvocationRequest) -> Invocation:
        """Run it and answer like an action's invoke (the record when ``blocking``),
        with ``cause`` and ``caused_by`` on its record like any step's."""
        ...


class Activator:
    def __init__(
        self,
        balancer: LoadBalancer,
        waiters: CompletionWaiters,
        activations: ActivationStore,
        controller_id: str,
        throttles: Throttles,
        metrics: ControllerMetrics | None = None,
        *,
        composer: Callable[[], Composer] | None = None,
        builtins: Callable[[], BuiltinActions] | None = None,
    ) -> None:
        """``composer`` and ``builtins`` are getters, not the parts: both need the
        controller this activator is part of, so the composition root (``squall.system``)
        binds them once the controller exists, before it starts. Without a composer
        every action is published as is; without builtins none is run in-process."""
        self._balancer = balancer
        self._metrics = metrics
        self._waiters = waiters
        self._activations = activations
        self._controller_id = controller_id
        self._throttles = throttles
        self._composer = composer
        self._builtins = builtins

    @property
    def composer(self) -> Composer | None:
        return None if self._composer is None else self._composer()

    @property
    def builtins(self) -> BuiltinActions | None:
        return None if self._builtins is None else self._builtins()

    async def invoke(self, request: InvocationRequest) -> Invocation:
        """Invoke ``request.action``: a sequence or conductor action through the
        composer, any other action with :meth:`invoke_primitive`. Same answers either way."""
        composer = self.composer  # asked once: a ``Late`` behind a property
        if composer is not None and composer.handles(request.action):
            return await composer.invoke(request)
        return await self.invoke_primitive(request)

    async def close(self) -> None:
        """Stop the composer (running sequences finish or are recorded as failed)."""
        if self.composer is not None:
            await self.composer.close()

    async def invoke_primitive(
        self, request: InvocationRequest, *, record_pending: bool = True
    ) -> Invocation:
        """Publish an activation of ``request.action``; wait up to ``wait_ms`` when
        blocking.

        The action's default parameters (not ``init`` ones) are merged under the payload;
        ``init`` parameters travel separately to become /init environment. ``caused_by``
        (``"sequence"`` for a step of a sequence or composition) becomes the record's
        ``causedBy`` annotation. ``record_pending=False`` skips the pending record, for
        callers that hand the id to nobody before the activation ends (a sequence's
        steps): it saves a store write per step. A built-in action (``builtins``) is run
        by the controller instead, whoever invokes it, a sequence included.
        """
        builtins = self.builtins  # asked once: a ``Late`` behind a property
        if builtins is not None and builtins.handles(request.action):
            return await builtins.invoke(request)
        identity, action, blocking = request.identity, request.action, request.blocking
        # The namespace's storeActivations limit off (OpenWhisk's user limit): no record
        # is stored for it, pending or final.
        policy = await self._throttles.policy(identity.namespace)
        store, network = policy.store_activations, policy.network
        record_pending = record_pending and store
        activation_id = new_activation_id()
        # The action's defaults under the payload (copied: the action's dicts are shared).
        content = {**action.run_defaults, **request.payload}
        message = ActivationMessage(
            transid=request.txid,
            activation_id=activation_id,
            namespace=identity.namespace,
            subject=identity.subject,
            action=action.fqn,
            revision=action.rev,
            content=content,
            blocking=blocking,
            controller=self._controller_id,
            accepted_ms=now_ms(),
            init_args={**action.init_defaults},
            cause=request.cause,
            caused_by=request.caused_by,
            store_record=store,
            network=network,
        )

        def pending() -> Activation:
            """The record of an accepted activation that has not ended: built only when
            it is stored (see below for when), not on a blocking invoke's warm path."""
            return pending_invocation(
                action,
                namespace=identity.namespace,
                subject=identity.subject,
                activation_id=activation_id,
                accepted_ms=message.accepted_ms,
                cause=request.cause,
                caused_by=request.caused_by,
            )

        # A blocking caller learns the id only from the answer: its pending record is
        # written only if that answer is a 202 (below), which saves a store write on
        # the warm path. Anyone else may learn the id at once: record it now, with the
        # message, so that a restart runs it if it never started (the invoker marks the
        # record started before it runs it: ``ActivationStore.start``).
        if record_pending and not blocking:
            await self._activations.put_pending(pending(), message.to_bytes())
        if blocking:
            self._waiters.register(activation_id)
        try:
            # Counted in flight before publishing, so its completion cannot come first.
            await self._throttles.started(identity.namespace, activation_id)
            await self._balancer.publish(message, action.limits.memory)
        except BaseException as exc:
            self._waiters.forget(activation_id)
            self._throttles.ended(activation_id)
            # Nothing will run it: end the record instead of leaving it pending forever.
            failed = ended(
                pending(),
                ActivationResponse.whisk_error(
                    exc.message if isinstance(exc, SquallError) else "The activation was not sent."
                ),
            )
            self._count(FAILED)
            await self._activations.put(failed)
            raise
        if not blocking:
            self._count(ACCEPTED)
            return Invocation(activation_id, None)
        record = await self._waiters.wait(activation_id, request.wait_ms / 1000, identity.namespace)
        self._count(TIMEOUT if record is None else COMPLETED)
        if record is None and record_pending:
            # The caller gets a 202 with the id: from now on it must be found. The
            # final record, or the invoker's started one, may already be stored;
            # put_pending never replaces either.
            await self._activations.put_pending(pending(), message.to_bytes())
        return Invocation(activation_id, record)

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.invocation(outcome)
