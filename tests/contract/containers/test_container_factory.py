"""The ContainerFactory / Container contract (squall/sandbox/contracts.py), on every backend.

Each test runs once on the process sandbox and once on Docker (see conftest.py): the
invoker relies on nothing else, so a backend that passes here can serve it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from squall.entities.activation import ABNORMAL_RUN, MEMORY_EXHAUSTED, timed_out_message
from squall.errors import ContainerError
from squall.invoker.outcomes import run_outcome
from squall.sandbox.contracts import SENTINEL, Container, ContainerFactory

from .conftest import leftovers, open_factory, start

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[3]
KIND = "python:3.11"
#: Every Python kind: python:3.13 (the default) runs on another interpreter than python:3.11
#: in each backend (Docker: an image of its own carrying the runtimes cache's CPython 3.13).
PYTHON_KINDS = ("python:3.11", "python:3.13")
PY_ECHO = (
    "import sys\n"
    "def main(p):\n"
    "    print('out', p.get('n'))\n"
    "    print('err', p.get('n'), file=sys.stderr)\n"
    "    return {'n': p.get('n', 0) + 1}\n"
)
ECHO = {
    "python:3.11": PY_ECHO,
    "python:3.13": PY_ECHO,
    "nodejs:20": (
        "function main(p) {\n"
        "  console.log('out', p.n); console.error('err', p.n);\n"
        "  return {n: (p.n || 0) + 1};\n"
        "}\n"
    ),
}
SLEEP = "import time\ndef main(p):\n    time.sleep(30)\n    return {}\n"
CRASH = "import os\ndef main(p):\n    print('bye', flush=True)\n    os._exit(3)\n"
HOG = "def main(p):\n    hog = b'x' * (p['mb'] << 20)\n    return {'len': len(hog)}\n"
# Leaves a process behind in a session of its own, named by the marker in its arguments.
SPAWN = (
    "import subprocess, sys\n"
    "def main(p):\n"
    "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', p['marker']],\n"
    "                     start_new_session=True)\n"
    "    return {}\n"
)


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line holds ``marker`` (containers' processes included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


async def initialized(
    factory: ContainerFactory, code: str, kind: str = KIND, **kw: int
) -> Container:
    container = await factory.create(kind, kw.get("memory_mb", 256), network=False)
    answer = await container.initialize({"code": code, "main": "main", "binary": False}, 20)
    assert answer.status == 200, answer
    return container


@pytest.mark.parametrize("kind", sorted(ECHO))
async def test_a_container_initializes_runs_pauses_resumes_and_is_destroyed(
    factory: ContainerFactory, kind: str
) -> None:
    # Given a started, initialized container of a built-in kind
    assert factory.supports(kind)
    container = await initialized(factory, ECHO[kind], kind)
    assert (container.kind, container.memory_mb) == (kind, 256)
    # When it runs twice, is paused, resumed and runs again
    first = await container.run({"value": {"n": 1}}, 20)
    second = await container.run({"value": {"n": 2}}, 20)
    container.pause()
    container.resume()
    third = await container.run({"value": {"n": 3}}, 20)
    # Then every run answered on the same warm runtime
    assert [r.body for r in (first, second, third)] == [b'{"n":2}', b'{"n":3}', b'{"n":4}']
    # And once destroyed (twice: idempotent) it refuses work
    await container.destroy()
    await container.destroy()
    with pytest.raises(ContainerError):
        await container.run({"value": {}}, 5)
    with pytest.raises(ContainerError):
        container.pause()


async def test_a_container_started_idle_serves_as_any_other(factory: ContainerFactory) -> None:
    # Given a container started ahead of any request (a stem cell: idle)
    container = await factory.create("nodejs:20", 256, network=False, idle=True)
    # When its action is initialized and runs twice
    init = await container.initialize({"code": ECHO["nodejs:20"], "main": "main"}, 20)
    runs = [await container.run({"value": {"n": n}}, 20) for n in (1, 2)]
    # Then it answers as a container started for a request does
    assert init.status == 200, init
    assert [r.body for r in runs] == [b'{"n":2}', b'{"n":3}']
    await container.destroy()


@pytest.mark.parametrize("kind", PYTHON_KINDS)
async def test_logs_are_the_lines_of_each_activation_up_to_the_sentinels(
    factory: ContainerFactory,
    kind: str,
) -> None:
    # Given an initialized container (its /init wrote a sentinel pair too)
    container = await initialized(factory, ECHO[kind], kind)
    await container.logs(10_000, 5)
    try:
        # When two activations run, each followed by a logs call
        await container.run({"value": {"n": 7}}, 20)
        first = await container.logs(10_000, 5)
        await container.run({"value": {"n": 8}}, 20)
        second = await container.logs(10_000, 5)
    finally:
        await container.destroy()
    # Then each holds its own lines from both streams, without the sentinels
    assert sorted((ln.stream, ln.text) for ln in first.lines) == [
        ("stderr", "err 7"),
        ("stdout", "out 7"),
    ]
    assert sorted((ln.stream, ln.text) for ln in second.lines) == [
        ("stderr", "err 8"),
        ("stdout", "out 8"),
    ]
    assert not any(SENTINEL in ln.text for ln in first.lines + second.lines)
    assert all(ln.time_ns > 0 for ln in first.lines) and not first.truncated


@pytest.mark.parametrize("kind", PYTHON_KINDS)
async def test_a_run_past_its_time_limit_times_out(factory: ContainerFactory, kind: str) -> None:
    # Given a container whose action sleeps for 30 s
    container = await initialized(factory, SLEEP, kind)
    try:
        # When it runs with a 500 ms limit
        answer = await container.run({"value": {}}, 0.5)
    finally:
        await container.destroy()
    # Then it timed out, which the invoker reports in OpenWhisk's words
    assert answer.timed_out
    outcome = run_outcome(answer, 500)
    assert outcome.result == {"error": timed_out_message(500, init=False)}


@pytest.mark.parametrize("kind", PYTHON_KINDS)
async def test_a_container_over_its_memory_limit_is_killed_and_says_so(
    factory: ContainerFactory,
    kind: str,
) -> None:
    # Given a 128 MB container whose action fills 400 MB
    container = await initialized(factory, HOG, memory_mb=128, kind=kind)
    try:
        # When it runs
        answer = await container.run({"value": {"mb": 400}}, 30)
    finally:
        await container.destroy()
    # Then the kernel killed it for want of memory, reported as OpenWhisk does
    assert answer.exited and answer.oom, answer
    assert run_outcome(answer, 30_000).result == {"error": MEMORY_EXHAUSTED}


#: Keeps ``mb`` MB of written bytes for as long as the container lives.
KEEP = "kept = []\ndef main(p):\n    kept.append(b'x' * (p['mb'] << 20))\n    return {}\n"


async def test_memory_used_is_what_the_container_holds_under_its_limit(
    factory: ContainerFactory,
) -> None:
    # Given a 128 MB container
    container = await initialized(factory, KEEP, memory_mb=128)
    try:
        before = container.memory_used()
        # When its action keeps 40 MB
        assert (await container.run({"value": {"mb": 40}}, 20)).status == 200
        after = container.memory_used()
    finally:
        await container.destroy()
    # Then the container's use grew by about that much, and stays under its limit
    assert before is not None and after is not None
    assert 36 << 20 <= after - before < 48 << 20, (before, after)
    assert after < 128 << 20
    # And a destroyed container has no figure
    assert container.memory_used() is None


@pytest.mark.parametrize("kind", PYTHON_KINDS)
async def test_a_crash_is_reported_as_an_exit_with_its_last_words(
    factory: ContainerFactory,
    kind: str,
) -> None:
    # Given a container whose action exits mid-run
    container = await initialized(factory, CRASH, kind)
    await container.logs(10_000, 5)
    try:
        answer = await container.run({"value": {}}, 20)
        logs = await container.logs(10_000, 2)
    finally:
        await container.destroy()
    # Then the run says it exited (not out of memory), and its output is kept
    assert answer.exited and not answer.oom
    assert run_outcome(answer, 20_000).result == {"error": ABNORMAL_RUN}
    assert ("stdout", "bye") in [(ln.stream, ln.text) for ln in logs.lines]


@pytest.mark.parametrize("kind", PYTHON_KINDS)
async def test_destroy_kills_every_process_of_the_container(
    factory: ContainerFactory, kind: str
) -> None:
    # Given a container whose action left a process in a session of its own
    marker = f"squall-contract-{uuid.uuid4().hex}"
    container = await initialized(factory, SPAWN, kind)
    answer = await container.run({"value": {"marker": marker}}, 20)
    assert answer.status == 200, answer
    assert await until(lambda: bool(processes_with(marker)))
    # When it is destroyed
    await container.destroy()
    # Then that process is gone too
    assert await until(lambda: not processes_with(marker)), processes_with(marker)


# An invoker that starts one container whose action leaves a process, says "ready", and
# waits to be killed.
INVOKER = """
import asyncio, sys
sys.path[:0] = [sys.argv[4], sys.argv[5]]
from containers.conftest import open_factory, start

async def main():
    factory = open_factory(sys.argv[1], __import__("pathlib").Path(sys.argv[2]))
    await start(factory)
    container = await factory.create("python:3.11", 256, network=False)
    await container.initialize({"code": sys.argv[3], "main": "main", "binary": False}, 20)
    await container.run({"value": {"marker": sys.argv[6]}}, 20)
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_restarted_invoker_removes_what_a_killed_one_left(
    backend: str, tmp_path: Path
) -> None:
    # Given an invoker process, killed by SIGKILL while it had a container with a child
    marker = f"squall-contract-{uuid.uuid4().hex}"
    workdir = tmp_path / "containers"
    tests = REPO / "tests"
    invoker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        INVOKER,
        backend,
        str(workdir),
        SPAWN,
        str(tests / "contract"),
        str(tests),
        marker,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    assert invoker.stdout is not None
    try:
        line = await asyncio.wait_for(invoker.stdout.readline(), 60)
        assert line == b"ready\n"
        assert processes_with(marker)
    finally:
        if invoker.returncode is None:
            os.kill(invoker.pid, signal.SIGKILL)
        await invoker.wait()
    # When a new invoker opens the same directory
    factory = open_factory(backend, workdir)
    try:
        await start(factory)
        # Then it found and removed the leftovers: nothing of the old container runs
        assert leftovers(factory) >= 1
        assert await until(lambda: not processes_with(marker)), processes_with(marker)
    finally:
        await factory.close()
