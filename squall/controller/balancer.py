"""Choosing the invoker that runs an activation.

``LoadBalancer`` is the seam; ``LeanBalancer`` is standalone's: one invoker in the same
process, reached through the bus like any other (OpenWhisk names its equivalent the same).
The cluster balancer (home invoker hashing, memory slots, health) implements the same
Protocol.
"""

from __future__ import annotations

from typing import Protocol

from squall.bus.contracts import MessagingProvider
from squall.bus.messages import ActivationMessage, invoker_topic
from squall.bus.push import message_sender
from squall.errors import ServiceUnavailable


class LoadBalancer(Protocol):
    """Guarantees: ``publish`` returns once the message is on the bus for one invoker, or
    raises ``ServiceUnavailable`` (503) when no invoker can take it; it never runs the
    action itself."""

    async def publish(self, message: ActivationMessage, memory_mb: int) -> str:
        """Send ``message``; returns the chosen invoker's id."""
        ...


class LeanBalancer:
    def __init__(self, bus: MessagingProvider, invoker_id: str) -> None:
        # The in-process bus takes the message object itself (bus/contracts.py).
        self._send = message_sender(bus)
        self._invoker_id = invoker_id
        self._topic = invoker_topic(invoker_id)
        self.available = True

    async def publish(self, message: ActivationMessage, memory_mb: int) -> str:
        if not self.available:
            raise ServiceUnavailable()
        await self._send(self._topic, message)
        return self._invoker_id
