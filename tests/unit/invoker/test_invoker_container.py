"""The per-container state machine: every allowed transition, and invalid ones raising.

The containers are real runtimes from the process sandbox: the state machine is driven
exactly as the pool drives it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from poolsupport import PY

from squall.invoker.container import ALLOWED, InvalidTransition, PooledContainer, State
from squall.sandbox.contracts import Container
from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

KEY = ("ns", "/ns/a", "1-x")


def state(pc: PooledContainer) -> State:
    """``pc.state`` read again: mypy keeps an attribute narrowed by an earlier ``assert
    pc.state is ...`` across the method calls that change it."""
    return pc.state


async def test_a_cold_start_walks_starting_initializing_busy_ready_paused_busy_removed(
    factory: ProcessContainerFactory,
) -> None:
    # Given a container record created before its runtime
    pc = PooledContainer(PY, 256)
    assert pc.state is State.STARTING and not pc.started
    container = await factory.create(PY, 256)
    # When it is assigned to an action / Then one run is in flight and it needs /init
    pc.assign(KEY, 1, container)
    assert (pc.state, pc.active, pc.key, pc.uses) == (State.INITIALIZING, 1, KEY, 1)
    assert not pc.initialized and not pc.has_slot()
    # When /init succeeded / Then its run goes on
    pc.initialized_ok()
    assert state(pc) is State.BUSY and pc.initialized
    # When the run ends / Then it is ready for the same key
    pc.end_run()
    assert (pc.state, pc.active) == (State.READY, 0) and pc.idle and pc.has_slot()
    # When frozen / Then paused; taken again it is busy
    pc.paused()
    assert pc.state is State.PAUSED and pc.idle
    pc.take_run()
    assert (pc.state, pc.active, pc.uses) == (State.BUSY, 1, 2)
    # When removed / Then the state is final and a late end of run changes nothing
    assert pc.removed()
    assert not pc.removed()
    pc.end_run()
    assert (pc.state, pc.active) == (State.REMOVED, 0)
    await container.destroy()


async def test_a_stem_cell_walks_starting_prewarmed_initializing(
    factory: ProcessContainerFactory,
) -> None:
    pc = PooledContainer(PY, 256)
    container = await factory.create(PY, 256)
    pc.started_as_stem_cell(container)
    assert pc.state is State.PREWARMED and pc.stem_cell and pc.key is None
    # A prewarmed container belongs to no action: it cannot take a run before /init
    with pytest.raises(InvalidTransition):
        pc.take_run()
    pc.assign(KEY, 1)
    assert state(pc) is State.INITIALIZING and pc.container is container and pc.key == KEY
    await container.destroy()


async def test_concurrent_runs_keep_it_busy_until_the_last_ends(
    factory: ProcessContainerFactory,
) -> None:
    pc = PooledContainer("nodejs:20", 256)
    container = await factory.create("nodejs:20", 256, {"__OW_CONCURRENCY": "2"})
    pc.assign(KEY, 2, container)
    pc.initialized_ok()
    pc.take_run()
    assert (pc.state, pc.active) == (State.BUSY, 2) and not pc.has_slot()
    # A third run has no slot
    with pytest.raises(InvalidTransition):
        pc.take_run()
    # Busy containers are not paused
    with pytest.raises(InvalidTransition):
        pc.paused()
    pc.end_run()
    assert (pc.state, pc.active) == (State.BUSY, 1)
    pc.end_run()
    assert pc.state is State.READY
    await container.destroy()


def _at(state: State, container: Container) -> PooledContainer:
    """A container brought to ``state`` through allowed transitions only."""
    pc = PooledContainer(PY, 256)
    if state is State.STARTING:
        return pc
    if state is State.PREWARMED:
        pc.started_as_stem_cell(container)
        return pc
    pc.assign(KEY, 2, container)  # two slots: BUSY → BUSY is then allowed
    if state is State.INITIALIZING:
        return pc
    pc.initialized_ok()
    if state is State.BUSY:
        return pc
    pc.end_run()
    if state is State.READY:
        return pc
    if state is State.PAUSED:
        pc.paused()
        return pc
    pc.removed()
    return pc


def _moves(container: Container) -> dict[State, Callable[[PooledContainer], None]]:
    """For each target state, the public call that asks for it."""

    def to_initializing(pc: PooledContainer) -> None:
        if pc.state is State.STARTING:
            pc.assign(KEY, 1, container)
        else:
            pc.assign(KEY, 1)

    return {
        State.PREWARMED: lambda pc: pc.started_as_stem_cell(container),
        State.INITIALIZING: to_initializing,
        State.BUSY: lambda pc: (
            pc.take_run() if pc.state is not State.INITIALIZING else pc.initialized_ok()
        ),
        State.READY: lambda pc: pc.end_run(),
        State.PAUSED: lambda pc: pc.paused(),
    }


async def test_every_transition_outside_the_table_raises(
    factory: ProcessContainerFactory,
) -> None:
    # Given one real runtime to hand to the records
    container = await factory.create(PY, 256)
    moves = _moves(container)
    for source in State:
        for target, move in moves.items():
            pc = _at(source, container)
            allowed = target in ALLOWED[source]
            # end_run on a removed container is a documented no-op, not a transition
            if source is State.REMOVED and target is State.READY:
                move(pc)
                assert pc.state is State.REMOVED
                continue
            if allowed:
                move(pc)
                assert pc.state is target, (source, target)
            else:
                with pytest.raises(InvalidTransition):
                    move(pc)
                assert pc.state is source, (source, target)
    # And REMOVED is reachable from every live state, and final
    for source in State:
        pc = _at(source, container)
        assert pc.removed() is (source is not State.REMOVED)
        assert pc.state is State.REMOVED
    await container.destroy()


def test_the_table_matches_the_documented_lifecycle() -> None:
    assert ALLOWED[State.REMOVED] == frozenset()
    assert ALLOWED[State.PREWARMED] == {State.INITIALIZING, State.REMOVED}
    assert ALLOWED[State.PAUSED] == {State.BUSY, State.REMOVED}
    assert State.READY not in ALLOWED[State.INITIALIZING]  # /init never leaves it idle
