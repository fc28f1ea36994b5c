"""Blocking invokes waiting for their completions.

The controller consumes its own completion topic (``completed.<controller id>``) in one
task and resolves the future registered for each activation id. Everything runs on one
event loop, so the dict needs no lock; a completion for an id nobody waits for (the
caller already got 202, or the request was cancelled) is dropped — the invoker stored
the record before sending it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from squall.bus.contracts import MessagingProvider
from squall.bus.messages import Completion, MessageError, completion_topic
from squall.errors import ProviderError

log = logging.getLogger("squall.controller.waiters")


class CompletionWaiters:
    def __init__(self, bus: MessagingProvider, controller_id: str) -> None:
        self._bus = bus
        self._topic = completion_topic(controller_id)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[Completion], None]] = []

    async def start(self) -> None:
        consumer = await self._bus.consumer(self._topic)
        self._task = asyncio.create_task(self._consume(consumer), name="completions")

    async def _consume(self, consumer: Any) -> None:
        while True:
            try:
                delivery = await consumer.receive()
            except ProviderError:
                return
            try:
                completion = Completion.from_bytes(delivery.data)
            except MessageError:
                log.exception("dropping a malformed completion")
                await delivery.ack()
                continue
            for listener in self._listeners:
                try:
                    listener(completion)
                except Exception:
                    log.exception("a completion listener failed")
            future = self._waiting.pop(completion.activation_id, None)
            if future is not None and not future.done():
                future.set_result(completion.record)
            await delivery.ack()

    def add_listener(self, listener: Callable[[Completion], None]) -> None:
        """Call ``listener`` (synchronously, on the loop) for every completion that
        reaches this controller, waited for or not (e.g. to count activations in flight)."""
        self._listeners.append(listener)

    def register(self, activation_id: str) -> asyncio.Future[dict[str, Any]]:
        """Register before publishing, so a fast completion cannot be missed."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[activation_id] = future
        return future

    def forget(self, activation_id: str) -> None:
        self._waiting.pop(activation_id, None)

    async def wait(self, activation_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The record, or None when ``timeout_s`` passes first (the action runs on)."""
        future = self._waiting.get(activation_id)
        if future is None:
            return None
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            return None
        finally:
            self.forget(activation_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()
