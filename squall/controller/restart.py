"""At start-up: finish what the store says was accepted and never ended (standalone).

Standalone's bus is in memory, so a crash (SIGKILL, power cut of the process, OOM kill)
loses every message on it and every activation its invoker held. The activation store
is the durable queue instead: an activation with a pending record — a non-blocking one,
a blocking one that answered 202, a trigger's rule activation, an alarm's, a topmost
sequence or composition — was stored with the message that runs it
(``ActivationStore.put_pending``), and is marked started before any of its code runs
(``ActivationStore.start``: by the invoker, before /init or /run; by the composer,
before a run's first step). So, for every pending record left (``unfinished``):

- **never started**: it runs now, with its id, payload and acceptance time — a primitive
  action goes to the invoker as a non-blocking activation (nobody waits for it any more),
  a sequence or composition to the composer;
- **started**: it may have had effects, so it is not run again: it ends with a ``whisk
  internal error`` record saying so (``put_unless_final``, which never replaces a final
  record);
- **nothing to run it from** (a pending record written without its message, e.g. by an
  older Squall, or whose action or namespace is gone): it ends with an error record too.

Why nothing runs twice: the only way to run an activation is to win ``start`` for its
id, which succeeds once per id across all processes sharing the store; a restart runs
again only what no one won it for, and the new run must win it too.

Namespaces whose records are not stored (``storeActivations`` off) leave nothing in the
store: their accepted non-blocking activations that had not ended are lost with the
process, as OpenWhisk loses them (their ids were never findable).

**A cluster controller** (:func:`resume_owned`) has the same rule for what only it was
running: its composer's topmost sequences and compositions (a primitive activation's
message is on an invoker's queue, durable in NATS, and runs on; recovery.py moves it
if its invoker dies). The composer stores each run's pending record with its owner,
``<controller id>/<incarnation>`` (a fresh incarnation per process). When a controller
starts, it takes the unfinished records owned by *earlier incarnations of its own id*
and handles them as above: never started → its composer runs them; started → ended
with :data:`CONTROLLER_INTERRUPTED`. Ownership is what keeps this safe: no other
controller touches them, and the only process that ran them — an earlier incarnation
of this id — is gone once this one starts (two live controllers must never share an
id, as for their completion topics). A run resumed here keeps its stored owner (the
earlier incarnation's), which the next restart of this id takes again. A controller
id that never starts again leaves its runs pending (docs/cluster.md, "Limits").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from msgspec import structs

from squall.bus.messages import ActivationMessage, MessageError
from squall.controller.auth import Identity
from squall.controller.balancer import LoadBalancer
from squall.controller.core import Controller
from squall.controller.entitlement import resolve_action
from squall.entities.activation import Activation, ActivationResponse, ended, now_ms
from squall.entities.names import parse_fqn
from squall.entities.sequence import SEQUENCE_KIND
from squall.errors import ServiceUnavailable, SquallError
from squall.store.contracts import Unfinished

log = logging.getLogger("squall.controller.restart")

INTERRUPTED = (
    "Squall stopped while this activation was running; it was not run again, as that "
    "could repeat its side effects."
)
UNRECOVERABLE = (
    "Squall stopped before this activation completed, and it could not be run again: {why}"
)
NOTHING_STORED = "nothing to run it from was stored."
CONTROLLER_INTERRUPTED = (
    "The controller running this sequence or composition stopped while it was running; it "
    "was not run again, as that could repeat its side effects."
)
# How many unfinished records are read at a time.
BATCH = 500
DEFAULT_MEMORY_MB = 256


@dataclass
class Resumed:
    """What :func:`resume_unfinished` did: activations sent to run, and ended."""

    ran: int = 0
    ended: int = 0


async def resume_unfinished(ctl: Controller, balancer: LoadBalancer) -> Resumed:
    """Run again every unfinished activation that never started, end the others (see
    the module docstring). Call it once the invoker and the controller are started, and
    before serving requests."""
    return await _resume_all(ctl, balancer, None, INTERRUPTED)


async def resume_owned(ctl: Controller, balancer: LoadBalancer) -> Resumed:
    """A cluster controller's: run again the sequences and compositions that earlier
    incarnations of its id accepted and never started, end those they had started (see
    the module docstring). Call it once the controller is started; it may run while
    requests are served (the records it reads are no one else's)."""
    composer = ctl.activator.composer
    if composer is None:
        return Resumed()
    return await _resume_all(
        ctl, balancer, f"{ctl.settings.controller_id}/", CONTROLLER_INTERRUPTED, composer.owner
    )


async def _resume_all(
    ctl: Controller,
    balancer: LoadBalancer,
    owned_by: str | None,
    interrupted: str,
    running: str | None = None,
) -> Resumed:
    """Every unfinished record (``owned_by`` a prefix of its owner, when given) except
    those owned by ``running`` (this process's own)."""
    done = Resumed()
    after = ""
    stopping = False
    while not stopping:
        page = await ctl.activations.unfinished(after, BATCH, owned_by)
        for unfinished in page:
            after = unfinished.record.activation_id
            if running is not None and unfinished.owner == running:
                continue
            outcome = await _resume(ctl, balancer, unfinished, interrupted)
            # None: this process is stopping; the rest is left for the next start.
            stopping = outcome is None
            if stopping:
                break
            if outcome:
                done.ran += 1
            else:
                done.ended += 1
        stopping = stopping or not page
    if done.ran or done.ended:
        log.warning("after a restart: %d unfinished activations run again (never started), "
                    "%d ended as whisk internal errors", done.ran, done.ended)  # fmt: skip
    return done


async def _resume(
    ctl: Controller, balancer: LoadBalancer, unfinished: Unfinished, interrupted: str
) -> bool | None:
    """True when it was sent to run, False when it was ended, None when the composer
    stopped meanwhile (it is left as it was)."""
    record = unfinished.record
    if unfinished.started:
        await _end(ctl, record, interrupted)
        return False
    if unfinished.message is None:
        await _end(ctl, record, UNRECOVERABLE.format(why=NOTHING_STORED))
        return False
    try:
        message = ActivationMessage.from_bytes(unfinished.message)
    except MessageError:
        log.exception("unreadable message of activation %s", record.activation_id)
        await _end(ctl, record, UNRECOVERABLE.format(why=NOTHING_STORED))
        return False
    # Nobody waits for it any more: the caller of a blocking one went with the process.
    message = structs.replace(message, blocking=False, controller=ctl.settings.controller_id)
    try:
        if record.annotation("kind") == SEQUENCE_KIND:
            if not await _compose(ctl, message):
                return None
        else:
            await ctl.throttles.started(message.namespace, message.activation_id)
            await balancer.publish(message, _memory(record))
    except SquallError as error:
        ctl.throttles.ended(message.activation_id)
        await _end(ctl, record, UNRECOVERABLE.format(why=error.message))
        return False
    return True


async def _compose(ctl: Controller, message: ActivationMessage) -> bool:
    """Hand a sequence or composition that never started to the composer again, as the
    namespace that invoked it (its action resolved again: it must still exist at the
    revision that was accepted); False, leaving it as it is, when the composer closed."""
    composer = ctl.activator.composer
    if composer is None:
        raise SquallError("no composer runs sequences here.")
    subject = await ctl.auth_store.get_subject(message.namespace)
    identity = Identity(subject.namespace, subject.uuid)
    action = await resolve_action(ctl, identity.namespace, parse_fqn(message.action, "_"))
    if action.rev != message.revision:
        raise SquallError("the action was changed after it was accepted.")
    try:
        composer.resume(identity, action, message)
    except ServiceUnavailable:
        return False  # the composer is closed: this process is stopping
    return True


def _memory(record: Activation) -> int:
    limits = record.annotation("limits")
    memory = limits.get("memory") if isinstance(limits, dict) else None
    return memory if isinstance(memory, int) else DEFAULT_MEMORY_MB


async def _end(ctl: Controller, record: Activation, error: str) -> None:
    final = ended(record, ActivationResponse.whisk_error(error), max(now_ms(), record.start))
    await ctl.activations.put_unless_final(final)
