"""CompletionWaiters: a blocking caller gets its record however early it comes."""

from __future__ import annotations

import pytest

from squall.bus.memory import MemoryBus
from squall.bus.messages import Completion
from squall.controller.waiters import CompletionWaiters
from squall.entities.activation import ActivationResponse, final_record, new_activation_id

pytestmark = pytest.mark.anyio


async def test_a_completion_before_the_wait_begins_is_not_lost() -> None:
    # Given a blocking invoke registered, whose completion arrives while its publish is
    # still waiting for the bus (before the caller reaches wait)
    waiters = CompletionWaiters(MemoryBus(), "0")
    activation_id = new_activation_id()
    waiters.register(activation_id)
    record = final_record(
        namespace="guest", name="noop", subject="guest", activation_id=activation_id,
        start=1, end=2, response=ActivationResponse.ok({}),
    )  # fmt: skip
    waiters.deliver(Completion("t" * 32, activation_id, "0", record))
    # When the caller waits / Then it gets the record at once, not a 202
    assert await waiters.wait(activation_id, 0.0) == record
    # And the registration is gone
    assert await waiters.wait(activation_id, 0.0) is None
