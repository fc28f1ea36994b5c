"""``NatsListener`` (``squall/bus/nats_listener.py``): how the read-loop listener on an
invoker's queue keeps exactly one pull out when a pull fails, is judged lost, or the
connection came back, and that closing the bus closes it. Against the machine's NATS
server; state is polled with a bounded deadline (no timed assertion).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from squall.bus import nats_listener
from squall.bus.contracts import Listener
from squall.bus.nats import NatsBus
from squall.bus.nats_consumer import _PULL_S
from squall.bus.nats_listener import NatsListener

from .bussupport import ARRIVES_S
from .conftest import NatsBuses
from .test_bus_push import Taken

pytestmark = pytest.mark.anyio


async def eventually(check: Callable[[], bool], timeout: float = ARRIVES_S) -> None:
    """Until ``check()`` holds; fails after ``timeout`` (never reached when it works)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the listener never got there"
        await asyncio.sleep(0.02)


def as_nats(listener: Listener) -> NatsListener:
    assert isinstance(listener, NatsListener)
    return listener


async def num_waiting(bus: NatsBus, listener: NatsListener) -> int:
    route = listener._consumer._route
    info = await bus._js.consumer_info(route.stream, route.durable)
    return info.num_waiting or 0


async def test_an_error_status_ends_the_pull_and_the_listener_binds_again(
    nats_buses: NatsBuses, caplog: pytest.LogCaptureFixture
) -> None:
    bus = await nats_buses.open()
    taken = Taken()
    listener = as_nats(await bus.listen("invoker.listener-error", taken))
    await eventually(lambda: listener._in_flight)
    sub = listener._sub
    assert sub is not None
    # The server's answer to a pull while JetStream is unavailable (after a restart)
    caplog.set_level(logging.ERROR, logger="squall.bus")
    await bus._nc.publish(sub._deliver, b"", headers={"Status": "503", "Description": "test"})
    # Then the pull has ended with that error: the listener binds again (after its
    # backoff) and sends a pull on the new inbox, and nothing failed in the read loop
    await eventually(lambda: listener._sub not in (None, sub) and listener._in_flight)
    assert [r.message for r in caplog.records if r.levelno >= logging.ERROR] == []
    await bus.send("invoker.listener-error", b"after")
    assert await taken.until(1) == [b"after"]
    await listener.close()


async def test_a_pull_judged_lost_leaves_one_pull_out(
    nats_buses: NatsBuses, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = await nats_buses.open()
    taken = Taken()
    listener = as_nats(await bus.listen("invoker.listener-lost", taken))
    await eventually(lambda: listener._in_flight)
    first = listener._pulled_at
    # One pull judged lost though the server still holds it (its answer only late, as
    # after a loop stall): a grace below zero, the task woken to look at once
    monkeypatch.setattr(nats_listener, "_GRACE_S", -_PULL_S)
    listener._consumer._wake_up()
    await eventually(lambda: listener._pulled_at != first and listener._in_flight)
    monkeypatch.undo()
    # Past the first pull's expiry (its late 408 may have come), one pull is out at
    # most, not two for good
    await asyncio.sleep(max(0.0, first + _PULL_S + 1.0 - time.monotonic()))
    deadline = time.monotonic() + ARRIVES_S
    while await num_waiting(bus, listener) > 1:
        assert time.monotonic() < deadline, "two pulls stay out"
        await asyncio.sleep(0.1)
    await bus.send("invoker.listener-lost", b"after")
    assert await taken.until(1) == [b"after"]
    await listener.close()


async def test_after_a_reconnect_a_pull_out_is_not_moved_to_a_new_inbox(
    nats_buses: NatsBuses,
) -> None:
    bus = await nats_buses.open()
    taken = Taken()
    listener = as_nats(await bus.listen("invoker.listener-reconnect", taken))
    await eventually(lambda: listener._in_flight)
    sub = listener._sub
    # What a reconnect does to the bus (the consumer must be bound again), then the
    # listener's task woken while its pull is out
    bus._generation += 1
    listener._consumer._wake_up()
    for _ in range(10):
        await asyncio.sleep(0.01)
    # Then the pull out keeps its inbox: a message in transit to it is handed over
    assert listener._sub is sub and listener._in_flight
    await bus.send("invoker.listener-reconnect", b"m")
    assert await taken.until(1) == [b"m"]
    assert taken.deliveries[0].attempt == 1
    # And once a pull ends without a message (its 408), the listener binds again
    await eventually(lambda: listener._sub not in (None, sub) and listener._in_flight)
    await listener.close()


async def test_closing_the_bus_closes_its_listeners(nats_buses: NatsBuses) -> None:
    bus = await nats_buses.open()
    listener = as_nats(await bus.listen("invoker.listener-bus-closed", Taken()))
    await bus.close()
    assert listener._closed
    assert listener._task.done()
