"""A cold start's /init and first /run written together (``InitAndRun``) to a container
forked by the Python zygote: real bubblewrap, cgroups and CPython, as test_zygote.py."""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from squall.sandbox.contracts import InitAndRun, RuntimeResponse
from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

#: Its /init takes at least 0.3 s (module level), its run reports when it started and
#: the deadline it was given.
SLOW_INIT = """
import os, sys, time
print("loading")
time.sleep(0.3)

def main(args):
    print("running")
    print("on stderr", file=sys.stderr)
    return {"now": time.time_ns() // 1_000_000, "deadline": int(os.environ["__OW_DEADLINE"])}
"""

FAILING_INIT = """
print("loading")
raise RuntimeError("no module today")

def main(args):
    return {"ran": True}
"""


async def test_init_and_run_in_one_write_give_the_run_a_deadline_from_its_start(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given a container of the zygote's kind, whose runtime takes pipelined requests
    container = await zygotic.create(zygotic.zygote_kind, 256, tenant="guest")
    assert isinstance(container, InitAndRun) and container.pipelines
    seen: list[RuntimeResponse] = []

    def initialized(init: RuntimeResponse) -> bool:
        seen.append(init)
        return init.status == 200

    # When /init (0.3 s at least) and /run are written together, the run's body naming a
    # deadline long past, with a time limit of 60 s
    written_ms = time.time_ns() // 1_000_000
    payload = {"value": {}, "activation_id": "a1", "deadline": "1"}
    code = {"code": textwrap.dedent(SLOW_INIT)}
    init, run = await container.initialize_and_run(code, payload, 60, initialized)
    # Then both answered, /init handed over first
    assert init.status == 200 and seen == [init]
    assert run is not None and run.status == 200, run
    result = json.loads(run.body)
    # And the deadline counts from the run's start (after /init's 0.3 s), not from the
    # write nor from the body
    assert result["deadline"] - 60_000 >= written_ms + 300
    assert result["deadline"] - 60_000 <= result["now"]
    # And the logs of both requests are there, in their order
    logs = await container.logs(10_000, wait=5)
    assert [line.text for line in logs.lines if line.stream == "stdout"] == ["loading", "running"]
    # And the connection serves the next run
    again = await container.run({"value": {}}, timeout=20)
    assert again.status == 200


async def test_a_failed_init_written_with_its_run_ends_the_exchange(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given a container of the zygote's kind and an action whose module fails to load
    container = await zygotic.create(zygotic.zygote_kind, 256, tenant="guest")
    assert isinstance(container, InitAndRun)
    # When /init and /run are written together
    code = {"code": textwrap.dedent(FAILING_INIT)}
    init, run = await container.initialize_and_run(code, {"value": {}}, 20, lambda _: False)
    # Then /init's failure is the answer, the run's is not read
    assert init.status == 502 and b"no module today" in init.body
    assert run is None
    # And the logs are /init's only (its line and its traceback), without waiting for more
    logs = await container.logs(10_000, wait=5)
    assert [line.text for line in logs.lines if line.stream == "stdout"] == ["loading"]
    assert any("no module today" in line.text for line in logs.lines if line.stream == "stderr")


async def test_a_run_pipelined_behind_a_failed_init_runs_nothing(
    zygotic: ProcessContainerFactory,
) -> None:
    # Given a container of the zygote's kind and an action whose module fails to load
    container = await zygotic.create(zygotic.zygote_kind, 256, tenant="guest")
    assert isinstance(container, InitAndRun)
    # When /init and /run are written together and the run's answer is read anyway
    code = {"code": textwrap.dedent(FAILING_INIT)}
    init, run = await container.initialize_and_run(code, {"value": {}}, 20, lambda _: True)
    # Then the run was refused: nothing ran
    assert init.status == 502
    assert run is not None and run.status == 403
    assert json.loads(run.body) == {"error": "Cannot run the action before initialization."}
