"""An activation cancelled while the invoker reads its logs, after a good run, gives its
container back: destroyed (its runtime may be mid-output), never left busy in the pool.

A real invoker on the in-process bus, a real SQLite store and a real Python runtime. The
action prints a line and then points its stdout at /dev/null (keeping the pipe open), so
the runtime's end-of-logs sentinel never reaches the invoker: the log read waits its
whole wait (2 s), long enough to find the activation's task awaiting it and cancel it
there."""

from __future__ import annotations

import asyncio

import pytest
from poolsupport import PY

from squall.bus.memory import MemoryBus
from squall.bus.messages import ActivationMessage, invoker_topic
from squall.entities.action import Action
from squall.entities.activation import now_ms
from squall.entities.names import EntityPath
from squall.invoker.container import PooledContainer, State
from squall.invoker.pool import ContainerPool
from squall.invoker.service import Invoker
from squall.sandbox.process import ProcessContainerFactory
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

# Prints, then hides the runtime's stdout sentinel (a good run: it returns a result).
CODE = """
import os
def main(args):
    print("before the logs", flush=True)
    os.dup(1)  # the pipe stays open (no end of file)...
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # ...but gets no sentinel
    return {"ok": True}
"""
ACTIVATION_ID = f"{7:032x}"


def _awaits(task: asyncio.Task[None], name: str) -> bool:
    """Whether ``task`` is suspended inside a coroutine function called ``name``."""
    step: object = task.get_coro()
    while step is not None:
        code = getattr(step, "cr_code", None)
        if code is not None and code.co_name == name:
            return True
        step = getattr(step, "cr_await", None)
    return False


def _state(pc: PooledContainer) -> State:
    """Its state now (a call: mypy would keep an asserted state narrowed across awaits)."""
    return pc.state


async def test_an_activation_cancelled_while_its_logs_are_read_destroys_its_container(
    factory: ProcessContainerFactory, sqlite_store: SqliteStore
) -> None:
    store = sqlite_store
    # Given a real invoker and an action that runs well but whose logs never end
    path = EntityPath("guest", "", "hides")
    stored = await store.entities.put(
        "guest",
        "actions",
        "hides",
        Action.create(path, {"exec": {"kind": PY, "code": CODE}}).to_store(),
        None,
    )
    bus = MemoryBus()
    pool = ContainerPool(factory, capacity_mb=256)
    invoker = Invoker("0", bus, store.entities, store.activations, pool)
    await invoker.start()
    try:
        message = ActivationMessage(
            transid="t7",
            activation_id=ACTIVATION_ID,
            namespace="guest",
            subject="guest",
            action="/guest/hides",
            revision=stored.rev,
            content={},
            blocking=True,
            controller="c0",
            accepted_ms=now_ms(),
        )
        # When it is invoked and its task is cancelled while it waits for the logs
        await bus.send(invoker_topic("0"), message.to_bytes())
        task, _ = invoker._running[ACTIVATION_ID]
        for _ in range(600):  # a cold start: up to a minute on a loaded machine
            if _awaits(task, "_logs") or task.done():
                break
            await asyncio.sleep(0.1)
        assert _awaits(task, "_logs"), "the activation never waited for its logs"
        (running,) = pool.containers()
        assert _state(running) is State.BUSY
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Then its container is not left busy: it was given back, and destroyed
        assert _state(running) is State.REMOVED
        assert [pc for pc in pool.containers() if pc.state is State.BUSY] == []
    finally:
        await invoker.close(grace_s=5)
        await bus.close()
