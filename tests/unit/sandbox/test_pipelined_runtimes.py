"""A cold start's /init and first /run written together (``InitAndRun``) to a Node.js
container, true cold start and stem cell, and the /init bound both proxies enforce
(``INIT_DEADLINE_HEADER``): real bubblewrap, cgroups, Node.js and CPython."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import textwrap
import time
import zipfile

import orjson
import pytest
from _required import unavailable

from squall.sandbox.contracts import (
    DEADLINE_AFTER_HEADER,
    INIT_DEADLINE_HEADER,
    InitAndRun,
    RuntimeResponse,
)
from squall.sandbox.http import UnixHttpClient
from squall.sandbox.launch import SOCKET_NAME
from squall.sandbox.process import ProcessContainer, ProcessContainerFactory

pytestmark = pytest.mark.anyio

NODE = "nodejs:20"

#: Its /init takes at least 0.3 s (module level), its run reports when it started and
#: the deadline it was given.
SLOW_INIT = """
console.log('loading');
const start = Date.now();
while (Date.now() - start < 300) {}

function main(args) {
  console.log('running');
  console.error('on stderr');
  return { now: Date.now(), deadline: parseInt(process.env.__OW_DEADLINE, 10) };
}
"""

FAILING_INIT = """
console.log('loading');
throw new Error('no module today');
function main(args) { console.log('ran'); return { ran: true }; }
"""

#: Counts its runs: a run refused before it started leaves the count as it was.
COUNTING = {
    "nodejs": "let runs = 0;\nfunction main(args) { runs += 1; return { runs }; }\n",
    "python": "runs = 0\n\ndef main(args):\n"
    "    global runs\n    runs += 1\n    return {'runs': runs}\n",
}


@pytest.mark.parametrize("idle", [False, True], ids=["cold", "stem-cell"])
async def test_a_nodejs_init_and_run_in_one_write_give_the_run_a_deadline_from_its_start(
    factory: ProcessContainerFactory, idle: bool
) -> None:
    # Given a Node.js container, started for this request or ahead of it (a stem cell)
    container = await factory.create(NODE, 256, tenant="guest", idle=idle)
    assert isinstance(container, InitAndRun) and container.pipelines
    if idle:
        await asyncio.sleep(0.2)  # left idle: it warms up (its requests would wait for it)
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


async def test_a_nodejs_run_pipelined_behind_a_failed_init_runs_nothing(
    factory: ProcessContainerFactory,
) -> None:
    # Given a Node.js container and an action whose module fails to load
    container = await factory.create(NODE, 256, tenant="guest")
    assert isinstance(container, InitAndRun)
    # When /init and /run are written together and the run's answer is read anyway
    code = {"code": textwrap.dedent(FAILING_INIT)}
    init, run = await container.initialize_and_run(code, {"value": {}}, 20, lambda _: True)
    # Then /init's failure is its answer and the run was refused: nothing ran
    assert init.status == 502 and b"no module today" in init.body
    assert run is not None and run.status == 403
    assert json.loads(run.body) == {"error": "Cannot run the action before initialization."}
    logs = await container.logs(10_000, wait=5)
    assert "ran" not in [line.text for line in logs.lines]


async def _pipelined(container: ProcessContainer, code: str, bound_ns: int) -> list[int]:
    """/init of ``code`` and a /run bounded by ``bound_ns`` in one write on a connection of
    its own, as the invoker writes them: the two statuses."""
    client = UnixHttpClient(container.directory / SOCKET_NAME, max_response_bytes=1 << 20)
    init = orjson.dumps({"value": {"code": code}})
    run = orjson.dumps({"value": {}})
    headers = {DEADLINE_AFTER_HEADER: "20000", INIT_DEADLINE_HEADER: str(bound_ns)}
    try:
        pipeline = await client.pipeline([("/init", init, {}), ("/run", run, headers)])
        try:
            return [(await pipeline.next()).status, (await pipeline.next()).status]
        finally:
            pipeline.close()
    finally:
        await client.aclose()


@pytest.mark.parametrize("family", ["nodejs", "python"])
async def test_a_run_pipelined_behind_an_init_past_its_bound_runs_nothing(
    factory: ProcessContainerFactory, family: str
) -> None:
    # Given a container of each proxy (Python's forked by the zygote) and an action that
    # counts its runs
    kind = NODE if family == "nodejs" else factory.zygote_kind
    container = await factory.create(kind, 256, tenant="guest")
    # When its /init and a /run are written together, the /init's bound already passed
    statuses = await _pipelined(container, COUNTING[family], time.monotonic_ns())
    # Then the /init answered and the /run was refused (408)
    assert statuses == [200, 408]
    # And it ran nothing: the next run is the action's first
    again = await container.run({"value": {}}, timeout=20)
    assert again.status == 200 and json.loads(again.body) == {"runs": 1}


@pytest.mark.parametrize("family", ["nodejs", "python"])
async def test_a_run_pipelined_behind_an_init_within_its_bound_runs(
    factory: ProcessContainerFactory, family: str
) -> None:
    # Given a container of each proxy and an action that counts its runs
    kind = NODE if family == "nodejs" else factory.zygote_kind
    container = await factory.create(kind, 256, tenant="guest")
    # When its /init and a /run are written together, the /init's bound a minute away
    bound = time.monotonic_ns() + 60_000_000_000
    statuses = await _pipelined(container, COUNTING[family], bound)
    # Then both answered and the run ran: the next one is the second
    assert statuses == [200, 200]
    again = await container.run({"value": {}}, timeout=20)
    assert json.loads(again.body) == {"runs": 2}


async def test_a_refused_run_comes_back_as_timed_out(factory: ProcessContainerFactory) -> None:
    # Given a Node.js container and an action whose /init takes 0.3 s at least
    container = await factory.create(NODE, 256, tenant="guest")
    assert isinstance(container, InitAndRun)
    # When it is written with its run under a time limit of 0.3 s (its /init's bound is
    # 0.27 s after the write)
    code = {"code": textwrap.dedent(SLOW_INIT)}
    init, run = await container.initialize_and_run(code, {"value": {}}, 0.3, lambda _: True)
    # Then whichever came first, our timer or the runtime's answer, nothing ran: the /init
    # timed out, or its run was refused and comes back as timed out
    assert init.timed_out or (run is not None and run.timed_out), (init, run)
    logs = await container.logs(10_000, wait=1)
    assert "running" not in [line.text for line in logs.lines]


def _esm_zip() -> str:
    """A zipped ES module action: its /init loads it with import(), asynchronously."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("package.json", '{"type": "module", "main": "index.js"}')
        archive.writestr("index.js", "export function main(args) { return { esm: true }; }\n")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


async def test_a_nodejs_run_pipelined_behind_an_asynchronous_init_waits_for_it(
    factory: ProcessContainerFactory,
) -> None:
    # Given a Node.js 18 container (no require() of an ES module: its /init imports it,
    # asynchronously) and an ES module action: Node.js hands the proxy the pipelined /run
    # while that /init waits for its import
    kind = "nodejs:18"
    if not factory.supports(kind):
        unavailable(f"kind {kind} is not offered here: run squall runtimes install")
    container = await factory.create(kind, 256, tenant="guest")
    assert isinstance(container, InitAndRun) and container.pipelines
    # When /init and /run are written together
    code = {"code": _esm_zip(), "binary": True}
    init, run = await container.initialize_and_run(code, {"value": {}}, 20, lambda _: True)
    # Then the run waited for the /init's answer and ran the action
    assert init.status == 200, init
    assert run is not None and run.status == 200, run
    assert json.loads(run.body) == {"esm": True}


#: ``COUNTING`` behind a module that takes 0.3 s to load.
SLOW_COUNTING = {
    "nodejs": "const t0 = Date.now();\nwhile (Date.now() - t0 < 300) {}\n" + COUNTING["nodejs"],
    "python": "import time\nt0 = time.time()\nwhile time.time() - t0 < 0.3:\n    pass\n"
    + COUNTING["python"],
}


@pytest.mark.parametrize("family", ["nodejs", "python"])
async def test_a_run_pipelined_behind_an_init_whose_answer_found_no_reader_runs_nothing(
    factory: ProcessContainerFactory, family: str
) -> None:
    # Given a container of each proxy and an action that takes 0.3 s to load and counts
    # its runs
    kind = NODE if family == "nodejs" else factory.zygote_kind
    container = await factory.create(kind, 256, tenant="guest")
    client = UnixHttpClient(container.directory / SOCKET_NAME, max_response_bytes=1 << 20)
    init = orjson.dumps({"value": {"code": SLOW_COUNTING[family]}})
    run = orjson.dumps({"value": {}})
    bound = str(time.monotonic_ns() + 60_000_000_000)
    headers = {DEADLINE_AFTER_HEADER: "20000", INIT_DEADLINE_HEADER: bound}
    # When its /init and a /run (bound a minute away) are written together and the
    # connection is closed while the /init still loads (the invoker gave up on it)
    pipeline = await client.pipeline([("/init", init, {}), ("/run", run, headers)])
    await asyncio.sleep(0.1)
    pipeline.close()
    await client.aclose()
    await asyncio.sleep(0.6)  # the /init has answered into the closed connection by now
    # Then the /run behind it ran nothing: the next run is the action's first
    again = await container.run({"value": {}}, timeout=20)
    assert again.status == 200 and json.loads(again.body) == {"runs": 1}
