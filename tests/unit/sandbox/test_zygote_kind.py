"""The zygote forks the containers of the default Python kind, on that kind's interpreter.

With ``python:3.13`` the default (shipped so; the tests' operator's manifest says it
again, so they keep meaning it), its containers come from a CPython 3.13 zygote, and the
zygote's objects are immortal (PEP 683) in them: reading one writes no reference count,
so the page holding it stays shared with the zygote (``bench/container_memory.py``
measures what that saves). Real bubblewrap, cgroups and the ``python:3.13`` interpreter
``squall runtimes install`` puts in the runtimes cache.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _required import unavailable

from squall.entities.manifest import shipped_manifest_text
from squall.sandbox.interpreters import detect, load_manifest
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


@pytest.fixture
async def factory313(anyio_backend: str, tmp_path: Path) -> AsyncIterator[ProcessContainerFactory]:
    runtimes = detect(load_manifest(default_python(tmp_path, "python:3.13")))
    if runtimes.get("python:3.13") is None:
        reason = runtimes.missing.get("python:3.13", "")
        unavailable(f"python:3.13 is not offered here ({reason}): run squall runtimes install")
    factory = ProcessContainerFactory(tmp_path / "containers", "https://api", runtimes=runtimes)
    try:
        yield factory
    finally:
        await factory.close()


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


async def test_other_python_kinds_start_through_bubblewrap(
    factory313: ProcessContainerFactory,
) -> None:
    # Given python:3.13 as the default Python kind, When a python:3.11 container is made
    container = await factory313.create("python:3.11", 256, tenant="guest")
    answer = await container.initialize({"code": REFCOUNTS}, timeout=30)
    assert answer.status == 200, answer.body
    ran = await container.run({"value": {}}, timeout=30)
    # Then it runs on CPython 3.11, started by bubblewrap: no zygote was started for it
    assert json.loads(ran.body)["version"] == [3, 11]
    assert factory313.zygote is None
