"""The invoker: takes ActivationMessages off its bus topic and runs them in containers.

For each message: fetch the action at the message's revision, get a container from the
pool (warm, or new and /init-ed), /run it, collect its logs, store the activation record,
and send the completion to the controller that accepted the request. Every accepted
message ends with a stored record — an internal failure becomes a ``whisk internal
error`` record, never silence.

Delivery: a message is acknowledged on the bus *before* its action runs, so a bus that
redelivers unacknowledged messages (NATS) never runs an action twice: if this invoker
dies after the acknowledgement, the controllers record the activation as lost instead
(``controller/recovery.py``). A redelivered message this invoker already took is dropped.
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

Concurrency: one consumer task reads the topic; each activation runs in its own task, so
a slow action never holds up the others. The pool bounds how many containers exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from squall.bus.contracts import Consumer, Delivery, MessagingProvider
from squall.bus.messages import (
    HEALTH_SUBJECT,
    INVOKER_STOPPING,
    INVOKER_UP,
    ActivationMessage,
    Completion,
    InvokerPing,
    MessageError,
    completion_topic,
    invoker_topic,
)
from squall.entities.action import Action, pending_invocation
from squall.entities.activation import (
    DEVELOPER_ERROR,
    Activation,
    ActivationResponse,
    final_record,
    format_log_line,
    now_ms,
    truncated_logs_message,
)
from squall.entities.kinds import BLACKBOX, CodeExec, is_native_image
from squall.entities.names import parse_fqn
from squall.entities.sequence import SequenceExec
from squall.errors import ContainerError, NotFound, ProviderError
from squall.invoker.apikeys import ActionKeys
from squall.invoker.outcomes import init_outcome, run_outcome
from squall.invoker.pool import ContainerPool
from squall.metrics.invoker import InvokerMetrics
from squall.sandbox.contracts import Container, ImageNotFound, image_kind
from squall.store.contracts import ActivationStore, EntityStore

log = logging.getLogger("squall.invoker")

ACTION_REMOVED = "Action could not be found or may have been deleted."
ACTION_MISMATCH = "Action version is not compatible and cannot be invoked."
PROVISION_FAILED = "Failed to provision resources to run the action."
SHUT_DOWN = "The invoker was shut down before the activation completed."
NOT_RUNNABLE = "A sequence is run by the controller, not by an invoker."
EXPIRED = (
    "The activation expired: it waited {waited} ms for an invoker, longer than the "
    "{limit} ms a caller waits; it was not run."
)
UNCONFIRMED = (
    "The activation was lost: the message bus could not confirm it was taken, and it was not run."
)
# Attempts at storing a record and sending its completion, a second apart.
FINISH_TRIES = 30
# Activation ids taken recently, to drop a redelivery of a message already taken.
RECENT_IDS = 10_000
# How long an unconfirmed message may take to come back before it counts as lost: well
# past the bus's acknowledgement wait (30 s for NATS), and the blocking wait.
UNCONFIRMED_AFTER_S = 90.0
# How long to wait for the sentinel lines after a run answered (they follow at once).
LOG_WAIT_S = 2.0
LOG_WAIT_AFTER_FAILURE_S = 0.2


def _env_value(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _caused_by(message: ActivationMessage) -> list[dict[str, Any]]:
    """The ``causedBy`` annotation of a step of a sequence or composition, if it is one."""
    return [{"key": "causedBy", "value": message.caused_by}] if message.caused_by else []


async def _retrying(
    attempt: Callable[[], Awaitable[None]],
    keep_trying: Callable[[], bool],
    tries: int = FINISH_TRIES,
    pause_s: float = 1.0,
) -> None:
    """``attempt()``, again after a ProviderError (up to ``tries`` times in all, and only
    while ``keep_trying()``)."""
    for n in range(tries):
        try:
            await attempt()
            return
        except ProviderError:
            if n == tries - 1 or not keep_trying():
                raise
            log.warning("store or bus unavailable; trying again in %g s", pause_s)
            await asyncio.sleep(pause_s)


def container_kind(code: CodeExec | SequenceExec) -> str:
    """The kind the pool and the backends see: a custom image's own kind
    (``blackbox:<image>``, Docker) or the action's kind (a skeleton ``blackbox`` runs
    natively)."""
    if isinstance(code, CodeExec) and code.kind == BLACKBOX and code.image:
        return code.kind if is_native_image(code.image) else image_kind(code.image)
    return code.kind


def image_pull_error(image: str) -> str:
    """OpenWhisk's ``Messages.imagePullError``."""
    return f"Failed to pull container image '{image}'."


def _concurrency(action: Action) -> int:
    """Runs one container may take at once: only the Node.js runtime overlaps runs."""
    return action.limits.concurrency if action.exec.kind.startswith("nodejs") else 1


class Invoker:
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
        self._entities = entities
        self._activations = activations
        self.pool = pool
        self.metrics = InvokerMetrics(pool)  # its own registry: several invokers per process
        self._actions: dict[tuple[str, str], Action] = {}
        self._consumer: Consumer | None = None
        self._loop_task: asyncio.Task[None] | None = None
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
        self._consumer = await self._bus.consumer(invoker_topic(self.id))
        self._loop_task = asyncio.create_task(self._consume(self._consumer), name="invoker")
        if self._ping_interval_s > 0:
            await self._ping(INVOKER_UP)
            self._ping_task = asyncio.create_task(self._pings(), name="invoker-pings")

    async def _pings(self) -> None:
        while True:
            await asyncio.sleep(self._ping_interval_s)
            try:
                await self._ping(INVOKER_UP)
            except Exception:
                log.exception("could not send a health ping")

    async def _ping(self, state: str) -> None:
        ping = InvokerPing(
            invoker=self.id,
            user_memory_mb=self.pool.capacity_mb,
            state=state,
            sent_ms=now_ms(),
            busy_mb=self.pool.used_mb,
            containers=len(self.pool.containers()),
            incarnation=self._incarnation,
        )
        await self._bus.publish(HEALTH_SUBJECT, ping.to_bytes())

    async def _consume(self, consumer: Consumer) -> None:
        while True:
            try:
                delivery = await consumer.receive()
            except Exception:
                return
            try:
                message = ActivationMessage.from_bytes(delivery.data)
            except MessageError:
                log.exception("dropping a malformed activation message")
                await self._ack(delivery)
                continue
            if message.activation_id in self._recent or message.activation_id in self._running:
                await self._ack(delivery)  # a redelivery of a message already taken
                continue
            # Acknowledged before it runs, in a task of its own: the loop pulls the next
            # message while the ack is confirmed (a redelivery meanwhile finds it running).
            task = asyncio.create_task(self._take(delivery, message))
            self._running[message.activation_id] = (task, message)
            task.add_done_callback(self._forget_task(message.activation_id))

    async def _take(self, delivery: Delivery, message: ActivationMessage) -> None:
        """Acknowledge ``message``, then run it: never run twice (module docstring)."""
        if not await self._ack(delivery):
            # Not confirmed: the bus may redeliver it (to us or to a controller emptying
            # our queue) or may have recorded the ack after all, and then nobody ever
            # runs it. Check later that it did end somewhere.
            self._watch_unconfirmed(message)
            return
        self._remember(message.activation_id)
        await self._handle(message)

    @staticmethod
    async def _ack(delivery: Delivery) -> bool:
        try:
            await delivery.ack()
        except Exception:
            log.exception("could not acknowledge an activation message")
            return False
        return True

    def _watch_unconfirmed(self, message: ActivationMessage) -> None:
        task = asyncio.create_task(self._unconfirmed(message), name="unconfirmed-ack")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _unconfirmed(self, message: ActivationMessage) -> None:
        """A message whose acknowledgement was not confirmed: if after a long while it
        was neither taken again nor ended anywhere, record it as lost (not run)."""
        await asyncio.sleep(self._unconfirmed_after_s)
        if message.activation_id in self._recent or message.activation_id in self._running:
            return  # redelivered to us and taken
        record = self._failure(message, UNCONFIRMED)
        try:
            if await self._activations.put_unless_final(record):
                log.warning("activation %s recorded as lost: its message's acknowledgement "
                            "was never confirmed", message.activation_id)  # fmt: skip
        except Exception:
            log.exception("could not record the loss of activation %s", message.activation_id)

    def _durably_queued(self, message: ActivationMessage) -> bool:
        """Whether an activation this invoker holds is queued in the store, message and
        all, and has not started: a non-blocking one (its pending record and message were
        stored before it was sent) not marked started here."""
        return (
            message.store_record
            and not message.blocking
            and not message.started
            and message.activation_id not in self._started
        )

    def _open(self) -> bool:
        return not self._closing

    @property
    def taken(self) -> int:
        """Activations taken off the bus since start (for ``/ping``)."""
        return self._taken

    def _remember(self, activation_id: str) -> None:
        self._taken += 1
        self._recent[activation_id] = None
        if len(self._recent) > RECENT_IDS:
            del self._recent[next(iter(self._recent))]

    def _forget_task(self, activation_id: str) -> Any:
        def done(_task: asyncio.Task[None]) -> None:
            self._running.pop(activation_id, None)
            self._started.discard(activation_id)

        return done

    # -- one activation ---------------------------------------------------------------

    async def _handle(self, message: ActivationMessage) -> None:
        record: Activation | None
        try:
            waited = now_ms() - message.accepted_ms
            if 0 < self._max_wait_ms < waited:
                record = self._failure(
                    message, EXPIRED.format(waited=waited, limit=self._max_wait_ms)
                )
            else:
                record = await self._activate(message)
        except Exception:
            log.exception("activation %s failed inside the invoker", message.activation_id)
            record = self._failure(message, "An internal error occurred while running the action.")
        if record is None:
            return  # not this invoker's to run, nor to end (see _start)
        try:
            await self._finish(message, record)
        except Exception:
            log.exception("could not finish activation %s", message.activation_id)

    async def _finish(self, message: ActivationMessage, record: Activation) -> None:
        self.metrics.observe(record)
        # Store first: a client that got the id must always find the record. Unless the
        # namespace's storeActivations limit is off: then, as in OpenWhisk, the record is
        # only sent to the controller (a blocking caller still gets its result).
        # A store or bus that is briefly unreachable is waited for (a result is not
        # dropped for an outage of a few seconds); the completion is sent even when the
        # record could not be stored, so the waiting caller still gets its result.
        try:
            if message.store_record:
                await _retrying(lambda: self._activations.put(record), self._open)
        finally:
            completion = Completion(message.transid, message.activation_id, self.id, record)
            data = completion.to_bytes()
            await _retrying(
                lambda: self._bus.send(completion_topic(message.controller), data), self._open
            )

    async def _action(self, message: ActivationMessage) -> Action:
        key = (message.action, message.revision)
        cached = self._actions.get(key)
        if cached is not None:
            return cached
        path = parse_fqn(message.action, message.namespace)
        doc = await self._entities.get(path.namespace, "actions", path.path)
        if doc.rev != message.revision:
            raise LookupError(ACTION_MISMATCH)
        action = Action.from_store(path, doc.body, doc.rev, doc.updated)
        if len(self._actions) > 10_000:
            self._actions.clear()
        # A revision's content never changes, so this entry never goes stale.
        self._actions[key] = action
        return action

    def _failure(self, message: ActivationMessage, error: str | ActivationResponse) -> Activation:
        now = now_ms()
        path = message.action.lstrip("/")
        return final_record(
            namespace=message.namespace,
            name=path.rsplit("/", 1)[-1],
            subject=message.subject,
            activation_id=message.activation_id,
            start=now,
            end=now,
            response=(ActivationResponse.whisk_error(error) if isinstance(error, str) else error),
            annotations=[{"key": "path", "value": path}, *_caused_by(message)],
            cause=message.cause,
        )

    async def _start(self, message: ActivationMessage, action: Action) -> bool:
        """The started point: make it durable that this activation starts, before any of
        its code runs (/init runs code too). False: it must not run — it already started
        (or ended) elsewhere, e.g. moved off this invoker while it waited here. A
        namespace whose records are not stored has nothing to mark (no recovery)."""
        if not message.store_record:
            return True
        if message.started:  # marked by the controller that moved it here
            self._started.add(message.activation_id)
            return True
        record = pending_invocation(
            action,
            namespace=message.namespace,
            subject=message.subject,
            activation_id=message.activation_id,
            accepted_ms=message.accepted_ms,
            cause=message.cause,
            caused_by=message.caused_by,
        )
        if await self._activations.start(record):
            self._started.add(message.activation_id)
            return True
        log.warning("activation %s not run: it started or ended elsewhere", message.activation_id)
        return False

    async def _activate(self, message: ActivationMessage) -> Activation | None:
        try:
            action = await self._action(message)
        except NotFound:
            return self._failure(message, ACTION_REMOVED)
        except LookupError:
            return self._failure(message, ACTION_MISMATCH)
        code = action.exec
        if not isinstance(code, CodeExec):
            # The controller runs sequences itself; only a bug would send one here.
            return self._failure(message, NOT_RUNNABLE)
        limits = action.limits
        timeout_s = limits.timeout / 1000
        # As in OpenWhisk, the key of the *invoking* namespace (which may not own the
        # action: a published package's). Fetched before a container is taken, so a store
        # failure here holds nothing; cached, so a warm run does not read the store.
        api_key: str | None = None
        if self._api_keys is not None and action.provides_api_key:
            api_key = await self._api_keys.api_key(message.namespace)
        key = (message.namespace, message.action, message.revision)
        try:
            # The namespace's network limit, else the invoker's default (its stem cells').
            network = (
                self.pool.stem_network if message.network is None else (message.network == "egress")
            )
            pc, cold = await self.pool.acquire(
                key, container_kind(action.exec), limits.memory, _concurrency(action), network
            )
        except ImageNotFound as ex:
            # OpenWhisk's answer when it cannot pull a blackbox image: a developer error.
            log.warning("no image for %s: %s", message.action, ex.message)
            return self._failure(
                message, ActivationResponse.developer_error(image_pull_error(ex.image))
            )
        except ContainerError:
            log.exception("no container for %s", message.action)
            return self._failure(message, PROVISION_FAILED)
        try:
            started = await self._start(message, action)
        except BaseException:
            self.pool.release(pc)  # unused (a new one that was never /init-ed is removed)
            raise
        if not started:
            self.pool.release(pc)
            return None
        # As in OpenWhisk, waitTime covers queueing and starting a container; the record's
        # start is when the container got the activation (duration then includes /init).
        start = now_ms()
        wait_time = max(0, start - message.accepted_ms)
        container = pc.container
        init_time: int | None = None
        response: ActivationResponse | None = None
        timed_out = False
        try:
            if cold:
                init_started = now_ms()
                init = await container.initialize(
                    self._init_payload(action, code, message, api_key), timeout_s
                )
                init_time = now_ms() - init_started
                response = init_outcome(init, limits.timeout)
                timed_out = init.timed_out
                if response is None:
                    self.pool.initialized(pc)
            if response is None:
                run = await container.run(self._run_payload(action, message, api_key), timeout_s)
                response = run_outcome(run, limits.timeout)
                timed_out = run.timed_out
            end = now_ms()
            failed = response.code >= DEVELOPER_ERROR
            logs = await self._logs(container, limits.logs, failed)
        except ContainerError:
            log.exception("container %s failed", container.id)
            response = ActivationResponse.whisk_error(PROVISION_FAILED)
            end, logs, failed = now_ms(), [], True
        finally:
            if response is None or response.code >= DEVELOPER_ERROR:
                self.pool.release(pc, destroy=True)
        if response.code < DEVELOPER_ERROR:
            self.pool.release(pc)
        annotations: list[dict[str, Any]] = [
            {"key": "path", "value": action.path.fqn.lstrip("/")},
            {"key": "waitTime", "value": wait_time},
            {"key": "kind", "value": action.exec.kind},
            {"key": "timeout", "value": timed_out},
            {"key": "limits", "value": limits.to_json()},
            *_caused_by(message),
        ]
        if init_time is not None:
            annotations.append({"key": "initTime", "value": init_time})
            if pc.stem_cell:  # the cold start took a prewarmed runtime: /init only
                annotations.append({"key": "prewarmed", "value": True})
        return final_record(
            namespace=message.namespace,
            name=action.path.name,
            subject=message.subject,
            activation_id=message.activation_id,
            start=start,
            end=end,
            response=response,
            version=action.version,
            logs=logs,
            annotations=annotations,
            cause=message.cause,
        )

    def _init_payload(
        self, action: Action, code: CodeExec, message: ActivationMessage, api_key: str | None
    ) -> dict[str, Any]:
        env = {k: _env_value(v) for k, v in message.init_args.items()}
        if api_key is not None:
            # At /init too, as OpenWhisk sends it: code run when the action loads (an
            # `openwhisk()` client made at module level) reads it from the environment.
            env["__OW_API_KEY"] = api_key
        payload: dict[str, Any] = {"name": action.path.name, "main": code.main or "main"}
        if code.has_code:  # as OpenWhisk: an image without code gets no "code" member
            payload["code"] = code.code
        return {**payload, "binary": code.binary, "env": env}

    def _run_payload(
        self, action: Action, message: ActivationMessage, api_key: str | None
    ) -> dict[str, Any]:
        deadline = now_ms() + action.limits.timeout
        payload: dict[str, Any] = {
            "value": message.content,
            "namespace": message.namespace,
            "action_name": action.path.fqn,
            "action_version": action.version,
            "activation_id": message.activation_id,
            "transaction_id": message.transid,
            "deadline": str(deadline),
        }
        if api_key is not None:
            payload["api_key"] = api_key  # the runtime exports it as __OW_API_KEY
        return payload

    async def _logs(self, container: Container, limit_mb: int, failed: bool) -> list[str]:
        limit = limit_mb * 1024 * 1024
        result = await container.logs(limit, LOG_WAIT_AFTER_FAILURE_S if failed else LOG_WAIT_S)
        lines = [format_log_line(line.time_ns, line.stream, line.text) for line in result.lines]
        if result.truncated:
            lines.append(truncated_logs_message(limit))
        return lines

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
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._consumer is not None:
            await self._consumer.close()
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
        await self.pool.close()
