"""The invoker: takes ActivationMessages off its bus topic and runs them in containers.

For each message: fetch the action at the message's revision, get a container from the
pool (warm, or new and /init-ed), /run it, collect its logs, store the activation record,
and send the completion to the controller that accepted the request. Every accepted
message ends with a stored record — an internal failure becomes a ``whisk internal
error`` record, never silence.

Delivery: a message is acknowledged on the bus *before* its action runs, so a bus that
redelivers unacknowledged messages (NATS) never runs an action twice: if this invoker
dies after the acknowledgement, the controllers record the activation as lost instead
(``controller/recovery.py``). One whose activation this invoker marks started (below)
is acknowledged while it is marked: the mark, not the ack, then fences a second run
(``invoker/intake.py``). A redelivered message this invoker already took is dropped.
A message that waited on the bus longer than the longest blocking wait is not run stale:
it is recorded as expired.

The started point: once a container is ready for it, and before any of its code runs
(/init included), the invoker marks the activation started in the activation store
(``ActivationStore.start``: one write, batched with the others by the store's group
commit). Only the one caller that marks it may run it; a restart (standalone) or a
recovering controller (cluster) finds what never started and runs it, and ends what had
started with an error — never a second run. A message that is refused the mark (it
started or ended elsewhere) is dropped without a record. A namespace whose records are
not stored (``storeActivations`` off) has no mark and no recovery.

Health: every ping interval the invoker broadcasts an ``InvokerPing`` (capacity, memory in
use); controllers route work only to invokers they hear from. It announces ``stopping``
when it shuts down.

Concurrency: the invoker listens on its topic (the bus hands it each message); each
activation runs in its own task, so a slow action never holds up the others
(:mod:`squall.invoker.intake`). The pool bounds how many containers exist.

Parts: :mod:`squall.invoker.intake` (taking messages), :mod:`squall.invoker.activate`
(one activation), :mod:`squall.invoker.completion` (storing the record, sending the
completion), :mod:`squall.invoker.pings` (health); this module puts them together and
shuts them down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from squall.bus.contracts import Listener, MessagingProvider
from squall.bus.messages import INVOKER_STOPPING, INVOKER_UP, ActivationMessage
from squall.bus.push import message_sender
from squall.entities.action import Action
from squall.invoker.apikeys import ActionKeys
from squall.invoker.intake import UNCONFIRMED_AFTER_S, Intake
from squall.invoker.pings import Pings
from squall.invoker.pool import ContainerPool
from squall.metrics.invoker import InvokerMetrics
from squall.store.contracts import ActivationStore, EntityStore

log = logging.getLogger("squall.invoker")

SHUT_DOWN = "The invoker was shut down before the activation completed."


class Invoker(Intake, Pings):
    def __init__(
        self,
        invoker_id: str,
        bus: MessagingProvider,
        entities: EntityStore,
        activations: ActivationStore,
        pool: ContainerPool,
        *,
        ping_interval_s: float = 0.0,
        max_wait_ms: int = 0,
        api_keys: ActionKeys | None = None,
    ) -> None:
        """``ping_interval_s`` > 0 broadcasts health pings (a cluster); ``max_wait_ms`` > 0
        expires messages that waited longer on the bus; ``api_keys`` gives actions whose
        ``provide-api-key`` says so the invoking namespace's action key (none without)."""
        self.id = invoker_id
        self._bus = bus
        self._send_message = message_sender(bus)  # carries objects in-process
        self._entities = entities
        self._activations = activations
        self.pool = pool
        self.metrics = InvokerMetrics(pool)  # its own registry: several invokers per process
        self._actions: dict[tuple[str, str], Action] = {}
        self._listener: Listener | None = None
        self._acks: set[asyncio.Task[bool]] = set()  # of dropped messages (intake.py)
        self._running: dict[str, tuple[asyncio.Task[None], ActivationMessage]] = {}
        self._started: set[str] = set()  # of _running: those marked started (_start)
        self._recent: dict[str, None] = {}  # insertion-ordered: oldest first
        self._taken = 0
        self._ping_interval_s = ping_interval_s
        self._max_wait_ms = max_wait_ms
        self._ping_task: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._incarnation = uuid.uuid4().hex
        self._closing = False
        self._unconfirmed_after_s = UNCONFIRMED_AFTER_S
        self._api_keys = api_keys

    async def start(self) -> None:
        self.pool.start()
        await self._start_intake()
        if self._ping_interval_s > 0:
            await self._ping(INVOKER_UP)
            self._ping_task = asyncio.create_task(self._pings(), name="invoker-pings")

    # -- shutdown ---------------------------------------------------------------------

    async def close(self, grace_s: float = 10.0) -> None:
        """Stop taking work, let running activations finish for ``grace_s``, then record
        the rest as internal errors — except those that never started and are queued in
        the store (they run again later) — and destroy every container."""
        self._closing = True
        if self._ping_task is not None:
            self._ping_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ping_task
            with contextlib.suppress(Exception):
                await self._ping(INVOKER_STOPPING)
        for watcher in list(self._watchers):
            watcher.cancel()
        await self._stop_intake()
        running = list(self._running.values())
        if running:
            _, pending = await asyncio.wait([t for t, _ in running], timeout=grace_s)
            for task, message in running:
                if task in pending:
                    queued = self._durably_queued(message)
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                    if queued:
                        # Never started and queued in the store with its message: it
                        # runs after the restart (standalone) or on another invoker.
                        log.info("activation %s left queued: it never started",
                                 message.activation_id)  # fmt: skip
                        continue
                    await self._finish(message, self._failure(message, SHUT_DOWN))
        for watcher in list(self._watchers):  # made by acks that failed during the grace
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await self.pool.close()
