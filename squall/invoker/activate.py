"""One activation in the invoker: the action at the message's revision, a container from
the pool, the started point marked (see :mod:`squall.invoker.service`), /init when cold,
/run, the logs, and the record built from the outcome. Part of
:class:`~squall.invoker.service.Invoker`."""

from __future__ import annotations

import logging
from time import time_ns
from typing import Any

import orjson

from squall.bus.messages import ActivationMessage
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
from squall.entities.kinds import CodeExec, is_native_image
from squall.entities.manifest import BLACKBOX
from squall.entities.names import parse_fqn
from squall.entities.sequence import SequenceExec
from squall.errors import ContainerError, NotFound
from squall.invoker.apikeys import ActionKeys
from squall.invoker.completion import Completing
from squall.invoker.outcomes import init_outcome, run_outcome
from squall.invoker.pool import ContainerPool
from squall.invoker.provisioning import acquire_retrying
from squall.sandbox.contracts import (
    Container,
    ImageNotFound,
    InitAndRun,
    RuntimeResponse,
    image_kind,
)
from squall.store.contracts import EntityStore

log = logging.getLogger("squall.invoker")

ACTION_REMOVED = "Action could not be found or may have been deleted."
ACTION_MISMATCH = "Action version is not compatible and cannot be invoked."
PROVISION_FAILED = "Failed to provision resources to run the action."
NOT_RUNNABLE = "A sequence is run by the controller, not by an invoker."
EXPIRED = (
    "The activation expired: it waited {waited} ms for an invoker, longer than the "
    "{limit} ms a caller waits; it was not run."
)
# How long to wait for the sentinel lines after a run answered (they follow at once).
LOG_WAIT_S = 2.0
LOG_WAIT_AFTER_FAILURE_S = 0.2


def _env_value(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


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


class Activating(Completing):
    """Running one activation; the attributes are set by the invoker's constructor."""

    pool: ContainerPool
    _entities: EntityStore
    _actions: dict[tuple[str, str], Action]
    _started: set[str]  # of the running ones: those marked started (_start)
    _max_wait_ms: int
    _api_keys: ActionKeys | None

    async def _handle(self, message: ActivationMessage, *, redeliverable: bool = False) -> None:
        """``redeliverable``: the message may be a copy the bus delivered again, its
        activation started (or ended) elsewhere — by an invoker that marked it and died
        before its ack was confirmed (intake.py). Ending it here without running it
        (expired, the action removed, no container) then first wins the started mark
        (``_claim``), as running it would: a record that exists is never overwritten."""
        record: Activation | None
        try:
            waited = time_ns() // 1_000_000 - message.accepted_ms  # now_ms(), inline
            if 0 < self._max_wait_ms < waited:
                record = self._failure(
                    message, EXPIRED.format(waited=waited, limit=self._max_wait_ms)
                )
            else:
                record = await self._activate(message)
            if record is not None and redeliverable and not await self._claim(message):
                return
        except Exception:
            log.exception("activation %s failed inside the invoker", message.activation_id)
            # A copy that failed before it won the started mark (reading its action,
            # marking it, claiming it) may have started or ended elsewhere: it ends its
            # activation only as any copy does, once it won the mark.
            if redeliverable and not await self._claim_failed(message):
                return
            record = self._failure(message, "An internal error occurred while running the action.")
        if record is None:
            return  # not this invoker's to run, nor to end (see _start)
        try:
            await self._finish(message, record)
        except Exception:
            log.exception("could not finish activation %s", message.activation_id)

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
        self._keep(key, action)
        return action

    def remember(self, action: Action) -> None:
        """Keep ``action``, as a controller beside this invoker read it from the same
        store (standalone: its catalog's reads, :mod:`squall.controller.catalog`), for the
        messages naming its revision (the activator names it by ``path.fqn``): a new
        action's first invoke then reads the store once, not twice."""
        self._keep((action.fqn, action.rev), action)

    def _keep(self, key: tuple[str, str], action: Action) -> None:
        if len(self._actions) > 10_000:
            self._actions.clear()
        # A revision's content never changes, so this entry never goes stale.
        self._actions[key] = action

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

    async def _claim(self, message: ActivationMessage) -> bool:
        """Whether this invoker may end ``message``'s activation: it marked it started
        (it ran, or failed in its container), else it wins the mark now."""
        if message.activation_id in self._started:
            return True
        if await self._activations.start(message.unstarted_record()):
            self._started.add(message.activation_id)
            return True
        log.warning("activation %s not ended here: it started or ended elsewhere",
                    message.activation_id)  # fmt: skip
        return False

    async def _claim_failed(self, message: ActivationMessage) -> bool:
        """``_claim`` for a copy that failed inside the invoker; a store that fails it
        too leaves the activation as the store has it (not ended here)."""
        try:
            return await self._claim(message)
        except Exception:
            log.exception("activation %s not ended here: its started mark could not be won",
                          message.activation_id)  # fmt: skip
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
            # A failed start is tried again: the activation has not started (provisioning.py).
            pc, cold = await acquire_retrying(
                lambda: self.pool.acquire(
                    key, container_kind(action.exec), limits.memory, _concurrency(action), network
                ),
                self._open,
                what=message.action,
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
        start = time_ns() // 1_000_000  # now_ms(), inline: each a frame less
        wait_time = max(0, start - message.accepted_ms)
        container = pc.container
        init_time: int | None = None
        response: ActivationResponse | None = None
        timed_out = False
        failed = True  # until a response says otherwise (its code read once)
        ended = False  # the try below ran to its end (no cancellation, no other error)
        try:
            run: RuntimeResponse | None = None
            if cold:
                init_started = now_ms()
                init_payload = self._init_payload(action, code, message, api_key)

                def initialized(init: RuntimeResponse) -> bool:
                    nonlocal init_time, response, timed_out
                    init_time = now_ms() - init_started
                    response = init_outcome(init, limits.timeout)
                    timed_out = init.timed_out
                    if response is None:
                        self.pool.initialized(pc)
                    return response is None

                if isinstance(container, InitAndRun) and container.pipelines:
                    # One exchange: /init and /run written together (the runtime computes
                    # the run's deadline when the run starts); a failed /init runs nothing.
                    _, run = await container.initialize_and_run(
                        init_payload,
                        self._run_payload(action, message, api_key),
                        timeout_s,
                        initialized,
                    )
                else:
                    initialized(await container.initialize(init_payload, timeout_s))
            if response is None:
                if run is None:
                    # Warm, the run starts at ``start`` (read just above); cold, after
                    # /init: the deadline is read now.
                    now = 0 if cold else start
                    run_payload = self._run_payload(action, message, api_key, now)
                    run = await container.run(run_payload, timeout_s)
                response = run_outcome(run, limits.timeout)
                timed_out = run.timed_out
            end = time_ns() // 1_000_000
            failed = response.code >= DEVELOPER_ERROR
            logs = await self._logs(container, limits.logs, failed)
            ended = True
        except ContainerError:
            log.exception("container %s failed", container.id)
            response = ActivationResponse.whisk_error(PROVISION_FAILED)
            end, logs, failed = now_ms(), [], True
        finally:
            # A failure destroys the container; so does any other way out (cancelled, say
            # while its logs were read after a good run): its runtime may be mid-output.
            if failed or not ended:
                self.pool.release(pc, destroy=True)
        if not failed:
            self.pool.release(pc)
        annotations: list[dict[str, Any]] = [
            {"key": "path", "value": action.record_path},
            {"key": "waitTime", "value": wait_time},
            {"key": "kind", "value": action.exec.kind},
            {"key": "timeout", "value": timed_out},
            {"key": "limits", "value": {**action.limits_json}},
            *message.caused_by_annotation(),
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
        self, action: Action, message: ActivationMessage, api_key: str | None, now: int = 0
    ) -> dict[str, Any]:
        """``now``: the time in ms the caller just read (0: read it here)."""
        deadline = (now or now_ms()) + action.limits.timeout
        payload: dict[str, Any] = {
            "value": message.content,
            "namespace": message.namespace,
            "action_name": action.fqn,
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
