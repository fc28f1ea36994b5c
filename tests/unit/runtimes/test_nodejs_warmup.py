"""The Node.js proxy's warm-up (squall/runtimes/nodejs/warmup.js): a runtime left idle
after it said it is ready (a stem cell) runs its own /init and /run once on an internal
no-op, then resets; the action must still see a fresh container."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest
from _required import unavailable
from runtimesupport import TIMEOUT_S

from squall.runtimes import proxy_path
from squall.sandbox.process import ProcessContainer, ProcessContainerFactory

pytestmark = pytest.mark.anyio

KIND = "nodejs:20"
#: Reports what an action can see of the container's past: how often its code was
#: loaded, the __OW_* variables, its init env, a stray `gc`, its file name; and logs a line.
REPORTER = """
globalThis.loads = (globalThis.loads || 0) + 1;
function main(params) {
  console.log(`ran ${process.env.__OW_ACTIVATION_ID}`);
  return {
    loads: globalThis.loads,
    env: Object.keys(process.env).filter((k) => k.startsWith('__OW_')).sort(),
    id: process.env.__OW_ACTIVATION_ID,
    ns: process.env.__OW_NAMESPACE,
    secret: process.env.SECRET,
    gc: typeof gc,
    file: __filename,
  };
}
"""
#: The variables a run exports (activation_id, namespace) plus the container's own.
EXPECTED_ENV = ["__OW_ACTIVATION_ID", "__OW_API_HOST", "__OW_NAMESPACE", "__OW_WORKDIR"]


async def first_activation(container: ProcessContainer, secret: str) -> dict[str, Any]:
    """/init of REPORTER, a second /init, one /run: checks what every mode must give."""
    init = await container.initialize(
        {"name": "reporter", "code": REPORTER, "env": {"SECRET": secret}}, timeout=TIMEOUT_S
    )
    assert (init.status, json.loads(init.body)) == (200, {"ok": True})
    # The warm-up's /init did not count, the action's does: a second one is refused.
    again = await container.initialize({"name": "x", "code": REPORTER}, timeout=TIMEOUT_S)
    assert again.status == 403
    # Nothing of the warm-up (no output, no sentinel) is in the logs.
    assert (await container.logs(limit_bytes=10_000, wait=5)).lines == []
    run = await container.run(
        {"value": {}, "activation_id": "a1", "namespace": "guest"}, timeout=TIMEOUT_S
    )
    assert run.status == 200
    logs = await container.logs(limit_bytes=10_000, wait=5)
    assert [(line.stream, line.text) for line in logs.lines] == [("stdout", "ran a1")]
    result: dict[str, Any] = json.loads(run.body)
    return result


@pytest.mark.parametrize(
    ("after_ms", "idle_s"),
    [("0", 0.0), ("1", 0.5), (None, 0.0)],
    ids=["warmed-before-ready", "warmed-while-idle", "cold-start-no-warm-up"],
)
async def test_the_action_sees_a_fresh_container_whether_or_not_it_warmed_up(
    factory: ProcessContainerFactory, after_ms: str | None, idle_s: float
) -> None:
    # Given a runtime that warmed up before it said it is ready, or while idle as a stem
    # cell, or (the default 50 ms, /init at once) a cold start's that did not warm up
    env = {"__OW_WARM_UP_AFTER_MS": after_ms} if after_ms is not None else None
    container = await factory.create(KIND, 256, env)
    await asyncio.sleep(idle_s)
    # When an action is initialized with its env and runs
    result = await first_activation(container, "s3")
    # Then it was loaded once and sees only its own activation's variables and env: none
    # of the warm-up's run (its namespace, action name, deadline), no `gc`, no setting
    assert result == {
        "loads": 1,
        "env": EXPECTED_ENV,
        "id": "a1",
        "ns": "guest",
        "secret": "s3",
        "gc": "undefined",
        # compiled from memory under the work directory's name: the sandbox's /tmp
        "file": "/tmp/index.js" if factory.isolation else f"{container.directory}/index.js",
    }


async def test_an_init_racing_the_warm_up_waits_for_it_and_sees_a_fresh_container(
    factory: ProcessContainerFactory,
) -> None:
    # Given runtimes that start warming up 1 ms after they said they are ready
    for delay_s in (0.0, 0.002, 0.01, 0.03):
        container = await factory.create(KIND, 256, {"__OW_WARM_UP_AFTER_MS": "1"})
        # When /init arrives before, during or after the warm-up (timing decides which)
        await asyncio.sleep(delay_s)
        result = await first_activation(container, f"s{delay_s}")
        # Then every time the action sees a fresh container with its own env
        assert (result["loads"], result["env"], result["secret"]) == (
            1,
            EXPECTED_ENV,
            f"s{delay_s}",
        )
        await container.destroy()


async def test_two_warmed_stem_cells_keep_their_own_env_and_memory_limit(
    factory: ProcessContainerFactory,
) -> None:
    if factory.isolation is None:
        unavailable("isolation (namespaces and cgroups) on this host")
    # Given two runtimes of different memory, both warmed up before they were ready
    small = await factory.create(KIND, 128, {"__OW_WARM_UP_AFTER_MS": "0"})
    large = await factory.create(KIND, 256, {"__OW_WARM_UP_AFTER_MS": "0"})
    # When each is given an action with its own env
    first = await first_activation(small, "small")
    second = await first_activation(large, "large")
    # Then each action sees its env only, and each sandbox keeps its own memory limit
    assert (first["secret"], second["secret"]) == ("small", "large")
    for container, memory_mb in ((small, 128), (large, 256)):
        assert container.cgroup is not None
        limits = [
            int((d / "memory.limit_in_bytes").read_text())
            for d in container.cgroup.directories
            if (d / "memory.limit_in_bytes").exists()
        ] or [int((d / "memory.max").read_text()) for d in container.cgroup.directories]
        assert limits == [memory_mb * 1024 * 1024]


WARM_UP_ALONE = """
const { warmUp } = require(process.argv[1]);
const seen = [];
warmUp((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    seen.push([req.method, req.url, JSON.parse(body)]);
    const status = Number(process.argv[2]);
    res.writeHead(status, { 'Content-Length': 2 });
    res.end('{}');
  });
}).then(() => process.stderr.write(`\\n${JSON.stringify(seen)}`));
"""


@pytest.mark.parametrize("status", [200, 502])
def test_the_warm_up_runs_init_then_run_through_the_handler_and_leaves_nothing_open(
    factory: ProcessContainerFactory, status: int
) -> None:
    # Given warmup.js alone, with a request handler that records and answers `status`
    found = factory.runtimes.get(KIND)
    assert found is not None
    script = proxy_path(KIND).parent / "warmup.js"
    # When a node process runs the warm-up through it
    done = subprocess.run(
        [found.executable, "-e", WARM_UP_ALONE, str(script), str(status)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    # Then it exited by itself (no server or socket left open), wrote nothing on stdout,
    # and the handler saw the no-op's /init, then one /run
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    said, _, recorded = done.stderr.rpartition("\n")
    seen = json.loads(recorded)
    assert [(method, url) for method, url, _ in seen] == [("POST", "/init"), ("POST", "/run")]
    assert seen[0][2]["value"]["code"] == "function main(params) { return {}; }"
    # A failing warm-up is not fatal: it says so on stderr and the runtime goes on
    if status == 200:
        assert said == ""
    else:
        assert "runtime proxy warm-up failed (it starts colder)" in said
