"""The Python proxy exports each run's ``__OW_*`` values without growing (proxy_action.py
``OwnedEnv``), and its actions see them as before: in ``os.environ``, in the C
environment, in children they start, set again after the action changed them."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from runtimesupport import invoke

import squall.runtimes
from squall.sandbox.process import ProcessContainer, ProcessContainerFactory

pytestmark = pytest.mark.anyio

PY = "python:3.13"


def _proxy_constant(name: str) -> int:
    """A constant of the proxy (not a package: loaded from its file)."""
    path = Path(squall.runtimes.__file__).parent / "python" / "proxy_action.py"
    spec = importlib.util.spec_from_file_location("proxy_action_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(getattr(module, name))


#: When a started proxy begins to use its owned buffers.
CTYPES_AFTER_RUNS = _proxy_constant("CTYPES_AFTER_RUNS")
PER_RUN = ("activation_id", "transaction_id", "deadline")
#: Runs measured. With setenv each run kept ≈ 272 B (bench/README.md "setenv") of C heap:
#: 272 kB here. The heap is read exactly (glibc's own count of the bytes it handed out),
#: not as the cgroup's charge, which moves in batches of pages: 1 000 runs show what
#: took 10 000 through the cgroup.
RUNS = 1_000
#: Growth allowed per run: a quarter of what setenv kept, so the old export fails it
#: while a run's transient allocations (a buffer not yet freed) pass.
BOUND_PER_RUN_B = 64
#: Python objects allowed to be left per RUNS runs: a leak of one a run fails.
BOUND_PY_BLOCKS = RUNS // 10

SEES = """
import os, subprocess, sys

def main(p):
    if p.get("measure"):
        return measure()
    if not p.get("check"):
        return {}
    child = subprocess.run(
        [sys.executable, "-I", "-S", "-c",
         "import os; print(os.environ['__OW_ACTIVATION_ID'], os.environ['__OW_DEADLINE'])"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    seen = {"environ": os.environ["__OW_ACTIVATION_ID"], "child": child,
            "deadline": os.environ["__OW_DEADLINE"], "tx": os.environ["__OW_TRANSACTION_ID"]}
    os.environ["__OW_ACTIVATION_ID"] = "changed by the action"
    del os.environ["__OW_DEADLINE"]
    return seen

mallinfo2 = None

def measure():
    # The C heap in use (glibc's mallinfo2: bytes handed out, in the main arena and
    # mmapped; setenv's strings and tree nodes are there) and the Python objects alive.
    # ctypes must have been loaded by the proxy already (it uses it for its owned
    # buffers): importing it here must not be what switched the proxy over.
    global mallinfo2
    had_ctypes = "ctypes" in sys.modules
    if mallinfo2 is None:
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

        mallinfo2 = ctypes.CDLL(None).mallinfo2
        mallinfo2.restype = MallInfo2
    import gc
    gc.collect()
    info = mallinfo2()
    return {"had_ctypes": had_ctypes, "c_heap": info.uordblks + info.hblkhd,
            "py_blocks": sys.getallocatedblocks()}
"""


async def _start(factory: ProcessContainerFactory, code: str, forked: bool) -> ProcessContainer:
    """A container of PY after /init of ``code``: forked by the namespace's zygote (it has
    ctypes loaded: the owned buffers are used from the first run), or started alone."""
    container = await factory.create(PY, 256, tenant="ns" if forked else None)
    answer = await container.initialize({"code": textwrap.dedent(code)}, timeout=10)
    assert answer.status == 200, json.loads(answer.body)
    return container


async def _runs(container: ProcessContainer, numbers: range) -> None:
    for n in numbers:
        assert (await invoke(container, {}, **_message(n)))[0] == 200
        if n % 1000 == 0:
            await container.logs(10_000_000, 5)  # the sentinels: not kept by the invoker
    await container.logs(10_000_000, 5)


def _message(n: int) -> dict[str, str]:
    return {
        "activation_id": f"{n:032x}",
        "transaction_id": f"tx{n:030d}",
        "deadline": str(1_800_000_000_000 + n),
    }


async def _measure(container: ProcessContainer, n: int) -> tuple[int, int]:
    """The container's C heap in use and its Python objects, read by the action (one
    more run, with values of its own)."""
    status, seen = await invoke(container, {"measure": True}, **_message(n))
    assert status == 200, seen
    assert seen["had_ctypes"], "the proxy had not loaded ctypes: no owned buffers"
    return int(seen["c_heap"]), int(seen["py_blocks"])


# One test for both properties: a started proxy takes CTYPES_AFTER_RUNS runs to switch
# to its owned buffers, and those runs are most of what such a test costs, so the runs
# that see their values are the ones across the switch, and the growth is measured in
# the same container right after it.
@pytest.mark.parametrize("forked", [True, False])
async def test_each_run_sees_its_own_values_and_a_warm_container_does_not_grow(
    factory: ProcessContainerFactory, forked: bool
) -> None:
    # Given an action that reads the run's values itself and through a child process,
    # then changes one and deletes another
    container = await _start(factory, SEES, forked)
    # (a started proxy uses the owned buffers only after CTYPES_AFTER_RUNS: all of its
    # runs but the last ones here go through os.environ, as before)
    first = 0 if forked else CTYPES_AFTER_RUNS - 2
    await _runs(container, range(first))
    for n in range(first, first + 4):
        # When it runs with new values each time
        run = _message(n)
        answer: tuple[int, Any] = await invoke(container, {"check": True}, **run)
        # Then it and its child see this run's values, not the last run's or its own
        assert answer == (
            200,
            {
                "environ": run["activation_id"],
                "child": [run["activation_id"], run["deadline"]],
                "deadline": run["deadline"],
                "tx": run["transaction_id"],
            },
        )
    # Given the container warm, past its first runs' one-time allocations
    warm = first + 4 + 500
    await _runs(container, range(first + 4, warm))
    heap_before, blocks_before = await _measure(container, warm)
    # When it serves RUNS more runs, each with new per-run values
    await _runs(container, range(warm + 1, warm + 1 + RUNS))
    heap_after, blocks_after = await _measure(container, warm + 1 + RUNS)
    # Then its C heap grew by less than a quarter of what setenv kept per run, and no
    # Python object was left per run
    grown = heap_after - heap_before
    assert grown < RUNS * BOUND_PER_RUN_B, f"C heap: {grown} B over {RUNS} runs"
    blocks = blocks_after - blocks_before
    assert blocks < BOUND_PY_BLOCKS, f"{blocks} Python objects left over {RUNS} runs"
    await container.destroy()


REPLACES_ENVIRON = """
import os
{preamble}

def main(p):
    seen = os.environ.get("__OW_ACTIVATION_ID")
    os.environ = dict(os.environ)  # a plain dict from now on, as some actions do
    return {{"seen": seen}}
"""


@pytest.mark.parametrize(
    ("forked", "preamble"),
    [
        (True, ""),  # the zygote's fork has ctypes: the owned buffers from the first run
        (False, "import ctypes"),  # ctypes loaded by the action: the owned buffers too
        (False, ""),  # neither: the os.environ path
    ],
)
async def test_an_action_that_replaces_os_environ_keeps_running(
    factory: ProcessContainerFactory, forked: bool, preamble: str
) -> None:
    # Given an action that replaces os.environ with a plain dict on every run
    container = await _start(factory, REPLACES_ENVIRON.format(preamble=preamble), forked)
    for n in range(3):
        # When it runs again with new values
        run = _message(n)
        answer: tuple[int, Any] = await invoke(container, {}, **run)
        # Then the proxy answers, and the action sees this run's activation id
        assert answer == (200, {"seen": run["activation_id"]})
    await container.destroy()


NO_CTYPES = """
import os, sys
sys.modules["ctypes"] = None  # `import ctypes` fails from now on, as if libffi were missing

def main(p):
    return {"seen": os.environ.get("__OW_ACTIVATION_ID")}
"""


@pytest.mark.parametrize("forked", [True, False])
async def test_runs_go_on_when_ctypes_cannot_be_imported(
    factory: ProcessContainerFactory, forked: bool
) -> None:
    # Given an action after whose /init ctypes cannot be imported
    container = await _start(factory, NO_CTYPES, forked)
    for n in range(3):
        # When it runs with new values
        run = _message(n)
        answer: tuple[int, Any] = await invoke(container, {}, **run)
        # Then each run answers with its own activation id (through os.environ)
        assert answer == (200, {"seen": run["activation_id"]})
    logs = await container.logs(10_000_000, 5)
    # and nothing about ctypes went to the action's logs
    assert "ctypes" not in str(logs)
    await container.destroy()
