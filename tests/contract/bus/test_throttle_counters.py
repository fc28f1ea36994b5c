"""The ThrottleCounters contract (squall/bus/counters.py), run against
both providers: in memory (standalone) and in NATS key-value buckets (a cluster).

``pair`` gives two controllers' views of one store: for memory the same object (a
process counts only for itself), for NATS two providers over two connections under one
prefix, as two controllers of a cluster would be. The NATS-only tests at the end show
how a dead controller's counts stop counting, and that a clean close releases them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import pytest
from _required import unavailable

from squall.bus.counters import (
    FIRES,
    INVOKES,
    MemoryCounters,
    ThrottleCounters,
)
from squall.bus.nats_counters import STALE_S, NatsCounters
from squall.bus.nats_inflight import MAX_HEADROOM
from squall.errors import ProviderError

from .bussupport import NATS_URL, reachable
from .conftest import NatsBuses

pytestmark = pytest.mark.anyio

MINUTE = 29_000_000
IDS = [f"{i:032x}" for i in range(1, 200)]
DEADLINE_S = 10.0


@dataclass
class Pair:
    a: ThrottleCounters
    b: ThrottleCounters


async def _nats_pair(buses: NatsBuses, clock_b: Callable[[], float] = time.time) -> Pair:
    a = await NatsCounters.open(await buses.open(), "0")
    b = await NatsCounters.open(await buses.open(), "1", clock=clock_b)
    return Pair(a, b)


@pytest.fixture(params=["memory", "nats"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    if request.param == "memory":
        memory = MemoryCounters()
        yield Pair(memory, memory)
        await memory.close()
        return
    if not reachable(NATS_URL):
        unavailable(f"NATS JetStream is not reachable at {NATS_URL}")
    buses = NatsBuses(NATS_URL)
    try:
        counters = await _nats_pair(buses)
        try:
            yield counters
        finally:
            await counters.a.close()
            await counters.b.close()
    finally:
        await buses.cleanup()


async def _until(probe: Callable[[], Awaitable[bool]], what: str) -> None:
    """Await ``probe()`` until it is true, up to DEADLINE_S."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE_S
    while not await probe():
        assert loop.time() < end, f"gave up waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_window_admits_exactly_allowed_attempts_across_controllers(pair: Pair) -> None:
    # Given a limit of 5 per minute, When 8 attempts alternate between two controllers
    numbers = [await (pair.a if i % 2 else pair.b).hit(INVOKES, "guest", MINUTE, 5)
               for i in range(8)]  # fmt: skip
    # Then the first 5 are admitted (numbered 1..5) and the rest refused (above 5)
    assert numbers[:5] == [1, 2, 3, 4, 5]
    assert all(n > 5 for n in numbers[5:]), numbers


async def test_racing_attempts_admit_exactly_allowed(pair: Pair) -> None:
    # Given 40 attempts at once, half through each controller, and a limit of 15
    attempts = [(pair.a if i % 2 else pair.b).hit(INVOKES, "racing", MINUTE, 15)
                for i in range(40)]  # fmt: skip
    numbers = await asyncio.gather(*attempts)
    # Then exactly 15 are admitted, numbered 1..15 once each
    admitted = sorted(n for n in numbers if n <= 15)
    assert admitted == list(range(1, 16)), numbers


async def test_windows_namespaces_and_minutes_are_counted_apart(pair: Pair) -> None:
    namespace = "user@example.com space"  # characters a key may not hold
    assert await pair.a.hit(INVOKES, namespace, MINUTE, 1) == 1
    assert await pair.b.hit(INVOKES, namespace, MINUTE, 1) > 1
    # Fires, another namespace and the next minute each start from zero
    assert await pair.b.hit(FIRES, namespace, MINUTE, 1) == 1
    assert await pair.a.hit(INVOKES, "other", MINUTE, 1) == 1
    assert await pair.b.hit(INVOKES, namespace, MINUTE + 1, 1) == 1


async def test_a_raised_limit_admits_again_within_the_minute(pair: Pair) -> None:
    assert await pair.a.hit(INVOKES, "raised", MINUTE, 1) == 1
    assert await pair.a.hit(INVOKES, "raised", MINUTE, 1) > 1
    # When the namespace's limit is raised / Then the next attempt is admitted
    assert await pair.a.hit(INVOKES, "raised", MINUTE, 3) <= 3


async def test_numbers_leased_and_unused_come_back_to_the_others(pair: Pair) -> None:
    # Given a limit of 40 and one attempt through a (which may lease more than one)
    assert await pair.a.hit(INVOKES, "lent", MINUTE, 40) == 1
    admitted = [1]

    async def all_admitted() -> bool:
        # When b takes attempts until it is refused (polled: numbers a leased and did
        # not use come back to the window after a while)
        while await pair.b.hit(INVOKES, "lent", MINUTE, 40) <= 40:
            admitted.append(1)
        return len(admitted) == 40

    # Then b is admitted the other 39, never more
    await _until(all_admitted, "the unused numbers given back")
    assert len(admitted) == 40


async def test_in_flight_is_counted_across_controllers_until_ended(pair: Pair) -> None:
    # Given two activations started on a and one on b (a's second start is a repeat)
    await pair.a.started("guest", IDS[0])
    await pair.a.started("guest", IDS[1])
    await pair.a.started("guest", IDS[1])
    await pair.b.started("guest", IDS[2])
    # Then both see three in flight, each owning its own
    assert await pair.a.in_flight("guest") == 3
    assert await pair.b.in_flight("guest") == 3
    assert pair.a.own("guest") + (0 if pair.a is pair.b else pair.b.own("guest")) == 3
    assert await pair.a.in_flight("other") == 0
    # When they end (one twice, one unknown id)
    for activation in (IDS[0], IDS[1], IDS[1], IDS[99]):
        pair.a.ended(activation)
    pair.b.ended(IDS[2])
    # Then both soon see none, never fewer
    for side in (pair.a, pair.b):
        await _until(partial(_none_in_flight, side), "the releases")
    assert pair.a.own("guest") == 0


async def test_concurrency_admits_up_to_allowed_across_controllers(pair: Pair) -> None:
    # Given a limit of 3 in flight, When 6 requests alternate between two controllers,
    # each admitted one started (as the activator does)
    taken = []
    for i in range(6):
        side = pair.a if i % 2 else pair.b
        taken.append(await side.admit("conc", 3))
        if taken[-1] < 3:
            await side.started("conc", IDS[i])
    # Then exactly 3 are admitted, and the refused ones see the 3 taken
    assert sum(1 for t in taken if t < 3) == 3, taken
    assert all(t >= 3 for t in taken[3:]), taken
    # When they end / Then both controllers soon admit again
    for i in range(3):
        (pair.a if i % 2 else pair.b).ended(IDS[i])
    for side in (pair.a, pair.b):
        await _until(partial(_admits, side, "conc", 3), "the released slots")


async def test_a_refused_controller_admits_again_once_the_others_end(pair: Pair) -> None:
    # Given b holding the whole limit of 2, and a refused
    for i in range(2):
        assert await pair.b.admit("held", 2) < 2
        await pair.b.started("held", IDS[i])
    assert await pair.a.admit("held", 2) >= 2
    # When b's activations end (a writes nothing meanwhile) / Then a soon admits again
    for i in range(2):
        pair.b.ended(IDS[i])
    await _until(partial(_admits, pair.a, "held", 2), "b's released slots")


async def test_a_large_limit_admits_many_and_others_count_them(pair: Pair) -> None:
    # Given a large limit, When one controller admits and starts 100 activations
    for i in range(100):
        assert await pair.a.admit("many", 1000) < 1000
        await pair.a.started("many", IDS[i])
    # Then the other counts at least those 100 as taken (and, reserved ahead, at most
    # the limit), and admits within what is left
    seen = await pair.b.in_flight("many")
    assert 100 <= seen <= 1000, seen
    assert await pair.b.admit("many", 1000) < 1000
    # When they end / Then what stays taken is at most a's headroom (none in memory)
    for i in range(100):
        pair.a.ended(IDS[i])
    await _until(partial(_taken_at_most, pair.b, "many", MAX_HEADROOM), "the releases")


async def _taken_at_most(counters: ThrottleCounters, namespace: str, most: int) -> bool:
    return await counters.in_flight(namespace) <= most


async def _admits(counters: ThrottleCounters, namespace: str, allowed: int) -> bool:
    return await counters.admit(namespace, allowed) < allowed


async def _none_in_flight(counters: ThrottleCounters) -> bool:
    return await counters.in_flight("guest") == 0


async def test_a_dead_controllers_activations_stop_counting_after_stale_s(
    nats_buses: NatsBuses,
) -> None:
    # Given a's activations in flight, seen by b
    later = [0.0]
    counters = await _nats_pair(nats_buses, clock_b=lambda: time.time() + later[0])
    try:
        for activation in IDS[:4]:
            await counters.a.started("guest", activation)
        assert await counters.b.in_flight("guest") == 4
        # When a stops writing (as a killed controller does) for longer than STALE_S
        assert isinstance(counters.a, NatsCounters)
        for task in counters.a._tasks:
            task.cancel()
        later[0] = STALE_S + 1
        # Then b no longer counts them (no leak), and b's own count is intact
        await counters.b.started("guest", IDS[10])
        assert await counters.b.in_flight("guest") == 1
    finally:
        await counters.b.close()


async def test_a_clean_close_releases_at_once(nats_buses: NatsBuses) -> None:
    counters = await _nats_pair(nats_buses)
    try:
        for activation in IDS[:3]:
            await counters.a.started("guest", activation)
        assert await counters.b.in_flight("guest") == 3
        # When a closes / Then b sees none in flight, without waiting STALE_S
        await counters.a.close()
        assert await counters.b.in_flight("guest") == 0
    finally:
        await counters.b.close()


async def test_buckets_lost_by_the_server_are_created_again(nats_buses: NatsBuses) -> None:
    # Given counters in use, When the server loses their buckets (as a NATS server
    # restarted without its store would)
    counters = await _nats_pair(nats_buses)
    try:
        assert await counters.a.hit(INVOKES, "guest", MINUTE, 5) == 1
        await counters.a.started("guest", IDS[0])
        cleaner = await nats_buses.open()
        await cleaner.delete_streams()
        # Then at most one request fails (ProviderError: a 503), and the counts go on
        # from the store's new buckets, this controller's in-flight truth written again
        answers: list[int] = []
        for _ in range(3):
            with contextlib.suppress(ProviderError):
                answers.append(await counters.a.hit(INVOKES, "guest", MINUTE, 5))
        assert answers[-2:] == [answers[-2], answers[-2] + 1] and len(answers) >= 2, answers
        await _until(lambda: _counts(counters.b, 1), "a's in-flight count written again")
    finally:
        await counters.a.close()
        await counters.b.close()


async def _counts(counters: ThrottleCounters, expected: int) -> bool:
    with contextlib.suppress(ProviderError):
        return await counters.in_flight("guest") == expected
    return False
