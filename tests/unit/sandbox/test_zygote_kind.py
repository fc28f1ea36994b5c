"""Every Python kind's containers are forked from a zygote running that kind's interpreter.

With ``python:3.13`` the default (shipped so; the tests' operator's manifest says it
again, so they keep meaning it), its containers come from a CPython 3.13 zygote, and the
zygote's objects are immortal (PEP 683) in them: reading one writes no reference count,
so the page holding it stays shared with the zygote (``bench/container_memory.py``
measures what that saves). A namespace's ``python:3.11`` containers come from a zygote
of their own, on CPython 3.11; the factory's cap on zygotes counts those of every kind.
Real bubblewrap, cgroups and the ``python:3.13`` interpreter ``squall runtimes install``
puts in the runtimes cache.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _polling import until
from _required import unavailable

from squall.entities.manifest import shipped_manifest_text
from squall.sandbox.container import ProcessContainer
from squall.sandbox.interpreters import Runtimes, detect, load_manifest
from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

#: What CPython 3.12 and 3.13 report as the reference count of an immortal object.
IMMORTAL_REFCOUNT = 2**32 - 1

REFCOUNTS = """
import json, sys
def main(args):
    return {"version": list(sys.version_info[:2]), "json": sys.getrefcount(json),
            "dumps": sys.getrefcount(json.dumps), "main": sys.getrefcount(main)}
"""


def default_python(tmp_path: Path, kind: str) -> Path:
    """An operator's manifest making ``kind`` (a shipped kind) the default Python kind."""
    shipped = json.loads(shipped_manifest_text())
    entry = next(k for k in shipped["runtimes"]["python"] if k["kind"] == kind)
    path = tmp_path / "runtimes.json"
    path.write_text(json.dumps({"runtimes": {"python": [{**entry, "default": True}]}}))
    return path


def runtimes_313(tmp_path: Path) -> Runtimes:
    """The runtimes with ``python:3.13`` the default Python kind, and ``python:3.11``."""
    runtimes = detect(load_manifest(default_python(tmp_path, "python:3.13")))
    for kind in ("python:3.13", "python:3.11"):
        if runtimes.get(kind) is None:
            reason = runtimes.missing.get(kind, "")
            unavailable(f"{kind} is not offered here ({reason}): run squall runtimes install")
    return runtimes


@pytest.fixture
async def factory313(anyio_backend: str, tmp_path: Path) -> AsyncIterator[ProcessContainerFactory]:
    factory = ProcessContainerFactory(
        tmp_path / "containers", "https://api", runtimes=runtimes_313(tmp_path)
    )
    try:
        yield factory
    finally:
        await factory.close()


async def refcounts(factory: ProcessContainerFactory, kind: str, tenant: str) -> Any:
    """What :data:`REFCOUNTS` answers in a new container of ``kind`` for ``tenant``."""
    container = await factory.create(kind, 256, tenant=tenant)
    answer = await container.initialize({"code": REFCOUNTS}, timeout=30)
    assert answer.status == 200, answer.body
    ran = await container.run({"value": {}}, timeout=30)
    assert ran.status == 200, ran.body
    return json.loads(ran.body)


def forked(container: ProcessContainer) -> bool:
    """Whether a zygote forked ``container``: its cgroup holds its runtime alone (one
    started through bubblewrap has bubblewrap's monitor and its init besides)."""
    assert container.cgroup is not None
    return len(container.cgroup.pids()) == 1


async def test_the_default_python_kind_is_forked_from_a_zygote_of_its_own_version(
    factory313: ProcessContainerFactory,
) -> None:
    # Given python:3.13 as the default Python kind
    assert factory313.zygote_kind == "python:3.13"
    # When a container of it is created for a namespace
    container = await factory313.create("python:3.13", 256, tenant="guest")
    answer = await container.initialize({"code": REFCOUNTS}, timeout=30)
    assert answer.status == 200, answer.body
    ran = await container.run({"value": {}}, timeout=30)
    assert ran.status == 200, ran.body
    # Then it was forked by the namespace's zygote, which runs CPython 3.13
    assert factory313.zygote is not None and factory313.zygote.alive
    result = json.loads(ran.body)
    assert result["version"] == [3, 13]
    # And what the zygote made is immortal there (its modules, their functions), while
    # the action's own objects are counted as usual
    assert result["json"] == IMMORTAL_REFCOUNT
    assert result["dumps"] == IMMORTAL_REFCOUNT
    assert result["main"] < 100


async def test_each_python_kind_is_forked_from_a_zygote_on_its_own_interpreter(
    factory313: ProcessContainerFactory,
) -> None:
    # Given python:3.13 as the default Python kind, and python:3.11 offered too
    assert factory313.zygote_kinds == {"python:3.11", "python:3.13"}
    # When one namespace makes a container of each
    new = await refcounts(factory313, "python:3.13", "guest")
    old = await refcounts(factory313, "python:3.11", "guest")
    # Then each kind has a zygote of its own for that namespace, and each container ran
    # on its kind's interpreter
    zygote313 = factory313.zygote_of("guest", "python:3.13")
    zygote311 = factory313.zygote_of("guest", "python:3.11")
    assert zygote313 is not None and zygote311 is not None and zygote313 is not zygote311
    assert zygote313.alive and zygote311.alive
    assert new["version"] == [3, 13] and old["version"] == [3, 11]
    # And CPython 3.11, without immortal objects, counts the zygote's modules as usual
    assert new["json"] == IMMORTAL_REFCOUNT and old["json"] < 100
    # And the pool is told a python:3.11 create would be forked now (no stem cell taken)
    assert factory313.forks("python:3.11", "guest")
    assert not factory313.forks("python:3.11", "other")


async def test_the_cap_on_zygotes_counts_every_kind(tmp_path: Path, anyio_backend: str) -> None:
    # Given a factory that keeps at most two zygotes
    factory = ProcessContainerFactory(
        tmp_path / "containers",
        "https://api",
        runtimes=runtimes_313(tmp_path),
        zygotes=2,
        zygote_spares=0,
    )
    try:
        # And alice's python:3.13 container alive, her python:3.11 one destroyed
        alice = await factory.create("python:3.13", 256, tenant="alice")
        await (await factory.create("python:3.11", 256, tenant="alice")).destroy()
        idle = factory.zygote_of("alice", "python:3.11")
        assert idle is not None and factory.zygote_of("alice", "python:3.13") is not None
        # When bob needs a python:3.11 zygote
        bob = await factory.create("python:3.11", 256, tenant="bob")
        # Then alice's idle python:3.11 zygote was closed for it, her busy one was not
        assert factory.zygote_of("alice", "python:3.11") is None and not idle.alive
        assert factory.zygote_of("alice", "python:3.13") is not None
        assert factory.zygote_of("bob", "python:3.11") is not None and forked(bob)
        # And while both serve live containers, a third zygote of either kind is not
        # started: carol's containers start through bubblewrap
        for kind in ("python:3.13", "python:3.11"):
            carol = await factory.create(kind, 256, tenant="carol")
            assert factory.zygote_of("carol", kind) is None and not forked(carol)
        assert forked(alice)
    finally:
        await factory.close()


async def test_when_one_kinds_zygote_dies_only_that_kind_falls_back(
    factory313: ProcessContainerFactory,
) -> None:
    # Given a namespace's zygotes of both kinds
    await factory313.create("python:3.13", 256, tenant="guest")
    await factory313.create("python:3.11", 256, tenant="guest")
    old = factory313.zygote_of("guest", "python:3.11")
    assert old is not None
    # When the python:3.11 one is killed
    monitor = old._process.pid  # the bubblewrap monitor of its sandbox
    assert monitor is not None
    os.kill(monitor, signal.SIGKILL)
    assert await until(lambda: not old.alive)
    # Then the next python:3.11 container starts through bubblewrap, while python:3.13
    # containers are still forked, by the same zygote as before
    assert not forked(await factory313.create("python:3.11", 256, tenant="guest"))
    new = factory313.zygote_of("guest", "python:3.13")
    assert forked(await factory313.create("python:3.13", 256, tenant="guest"))
    assert new is not None and new.alive and factory313.zygote_of("guest", "python:3.13") is new
