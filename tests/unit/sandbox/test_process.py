"""ProcessContainerFactory / ProcessContainer with real Node.js and CPython runtimes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _polling import until

from squall.errors import ContainerError
from squall.sandbox import launch
from squall.sandbox.contracts import Container, ContainerFactory
from squall.sandbox.http import UnixHttpClient
from squall.sandbox.interpreters import Interpreter, Runtimes, detect, load_manifest
from squall.sandbox.process import ProcessContainer, ProcessContainerFactory

pytestmark = pytest.mark.anyio

# Per kind: an action that logs on both streams, one that spins forever, one that kills
# its own process, and one that starts a child process and returns its pid.
ACTIONS: dict[str, dict[str, str]] = {
    "nodejs:20": {
        "chatty": """function main(p) {
            console.log('out ' + p.n); console.error('err ' + p.n); console.log('out2 ' + p.n);
            return {n: p.n} }""",
        "spin": "function main() { console.log('spinning'); while (true) {} }",
        "suicide": "function main() { console.log('bye'); process.exit(1) }",
        "spawn": """function main() {
            const child = require('child_process').spawn('sleep', ['300'], {stdio: 'ignore'});
            return {pid: child.pid} }""",
        "big_log": """function main() {
            for (let i = 0; i < 200; i++) console.log('x'.repeat(99));
            return {} }""",
    },
    "python:3.13": {
        "chatty": """import sys
def main(p):
    print('out', p['n']); print('err', p['n'], file=sys.stderr); print('out2', p['n'])
    return {'n': p['n']}""",
        "spin": "def main(p):\n    print('spinning')\n    while True:\n        pass",
        "suicide": "import os\ndef main(p):\n    print('bye')\n    os._exit(1)",
        "spawn": """import subprocess
def main(p):
    return {'pid': subprocess.Popen(['sleep', '300']).pid}""",
        "big_log": "def main(p):\n    for _ in range(200):\n        print('x' * 99)\n    return {}",
    },
}
KINDS = sorted(ACTIONS)
REPO = Path(__file__).resolve().parents[3]
# How long a call that must not wait may take before the test calls it a hang.
DEADLINE_S = 60.0


async def started(factory: ProcessContainerFactory, kind: str, action: str) -> ProcessContainer:
    container = await factory.create(kind, 256)
    answer = await container.initialize({"code": ACTIONS[kind][action]}, timeout=10)
    assert answer.status == 200, answer.body
    await container.logs(limit_bytes=10_000, wait=5)  # the /init activation's (empty) logs
    return container


def reaped(pid: int) -> bool:
    """Whether ``pid`` no longer exists at all (not even as a zombie)."""
    return not os.path.exists(f"/proc/{pid}")


def entries(directory: Path) -> list[str]:
    """The container directories in a factory's work directory (not its own lock and
    sandbox files, whose names start with a dot)."""
    return [name for name in os.listdir(directory) if not name.startswith(".")]


def gone(pid: int) -> bool:
    """Whether ``pid`` is dead: no such process, or a zombie waiting for its reaper."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped between open and read
        return True


def as_contract(factory: ProcessContainerFactory, container: ProcessContainer) -> Container:
    """Checked by mypy: the process sandbox implements both Protocols."""
    contract: ContainerFactory = factory
    assert contract is factory
    return container


async def test_the_factory_knows_its_kinds(tmp_path: Path, anyio_backend: str) -> None:
    # Given a process factory, When asked about kinds, Then only those it can start
    factory = ProcessContainerFactory(tmp_path / "a", "https://api")
    found = factory.runtimes
    without_node = {k: v for k, v in found.interpreters.items() if not k.startswith("nodejs")}
    nodeless = ProcessContainerFactory(
        tmp_path / "b", "x", runtimes=Runtimes(found.manifest, without_node)
    )
    try:
        assert factory.supports("nodejs:20") and factory.supports("python:3.13")
        assert not factory.supports("java:8")
        assert not nodeless.supports("nodejs:20")
    finally:
        await factory.close()
        await nodeless.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_two_runs_get_only_their_own_logs_from_both_streams(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given a warm container of an action logging on stdout and stderr
    container = await started(factory, kind, "chatty")
    # When it runs twice, collecting logs after each run
    results = []
    for n in (1, 2):
        answer = await container.run({"value": {"n": n}}, timeout=10)
        results.append((json.loads(answer.body), await container.logs(10_000, wait=5)))
    # Then each activation got exactly its own lines, in order, stamped by the reader
    for n, (result, logs) in enumerate(results, start=1):
        assert result == {"n": n}
        stdout = [line.text for line in logs.lines if line.stream == "stdout"]
        stderr = [line.text for line in logs.lines if line.stream == "stderr"]
        assert stdout == [f"out {n}", f"out2 {n}"]
        assert stderr == [f"err {n}"]
        stamps = [line.time_ns for line in logs.lines]
        assert stamps == sorted(stamps) and abs(stamps[0] - time.time_ns()) < 60e9
        assert not logs.truncated


@pytest.mark.parametrize("kind", KINDS)
async def test_logs_over_the_limit_are_truncated(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given an action printing 200 lines of 99 bytes
    container = await started(factory, kind, "big_log")
    # When it runs and logs are collected with a 1000-byte limit
    await container.run({"value": {}}, timeout=10)
    logs = await container.logs(limit_bytes=1000, wait=5)
    # Then 10 lines are kept and truncation is reported
    assert len(logs.lines) == 10
    assert logs.truncated


@pytest.mark.parametrize("kind", KINDS)
async def test_a_run_past_its_timeout_is_reported_and_destroy_still_works(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given an action that never returns
    container = await started(factory, kind, "spin")
    # When it runs with a 0.3 s timeout
    answer = await container.run({"value": {}}, timeout=0.3)
    # Then the answer says timed out, its output so far is in its logs
    assert answer.timed_out and answer.status == 0
    logs = await container.logs(10_000, wait=0.1)
    assert [line.text for line in logs.lines] == ["spinning"]
    # And the busy container can be destroyed
    await container.destroy()
    assert gone(container.pid)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_action_killing_its_process_is_reported_exited(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given an action that exits its own process
    container = await started(factory, kind, "suicide")
    # When it runs
    answer = await container.run({"value": {}}, timeout=10)
    # Then the answer says exited, and logs hold its last words without waiting for
    # sentinels that never come
    assert answer.exited and not answer.timed_out
    # (asked to wait an hour for them: only a hang past the test's deadline fails it)
    logs = await asyncio.wait_for(container.logs(10_000, wait=3600), DEADLINE_S)
    assert [line.text for line in logs.lines] == ["bye"]
    # And a later run also reports exited rather than hanging or raising
    assert (await container.run({"value": {}}, timeout=10)).exited
    # And once destroyed, no zombie is left: bubblewrap's monitor exited before the
    # sandbox's init, which the invoker (its subreaper) reaped itself; a zygote-forked
    # container's runtime (its pid 1) is reaped by the zygote's sandbox a moment later
    await container.destroy()
    assert container.sandbox_pid is not None
    sandbox_pid = container.sandbox_pid
    assert await until(lambda: reaped(container.pid) and reaped(sandbox_pid))


@pytest.mark.parametrize("kind", KINDS)
async def test_destroy_kills_every_process_and_is_idempotent(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given a container whose action started a long-running child process: four processes
    # in its cgroup (bubblewrap's monitor, the namespace's init, the runtime, the child),
    # or two for one forked by the Python zygote (the runtime is its namespace's init)
    container = await started(factory, kind, "spawn")
    answer = await container.run({"value": {}}, timeout=10)
    assert answer.status == 200
    assert container.cgroup is not None
    members = container.cgroup.pids()
    forked = kind in factory.zygote_kinds and factory.zygote is not None
    assert len(members) == (2 if forked else 4) and container.pid in members
    # When it is destroyed twice, once concurrently
    await asyncio.gather(container.destroy(), container.destroy())
    await container.destroy()
    # Then every process was reaped, and the directory and the cgroup are gone
    assert await until(lambda: all(reaped(pid) for pid in members))
    assert not container.directory.exists()
    assert not any(d.exists() for d in container.cgroup.directories)
    assert container not in factory.containers
    # And using it now raises ContainerError
    with pytest.raises(ContainerError):
        await container.run({"value": {}}, timeout=1)
    with pytest.raises(ContainerError):
        await container.initialize({"code": "x"}, timeout=1)


# An "invoker" that starts a container, runs the spawning action, prints the pids of the
# container's processes, then waits to be killed.
INVOKER = """
import asyncio, json, sys
from pathlib import Path
from squall.sandbox.process import ProcessContainerFactory

async def main():
    factory = ProcessContainerFactory(Path(sys.argv[1]), "https://api", zygote_spares=0)
    container = await factory.create(sys.argv[2], 256, tenant="guest")
    await container.initialize({"code": sys.argv[3]}, timeout=10)
    await container.run({"value": {}}, timeout=10)
    print(json.dumps(sorted(container.cgroup.pids())), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.parametrize("kind", KINDS)
async def test_runtimes_die_with_their_invoker(
    tmp_path: Path, kind: str, anyio_backend: str
) -> None:
    # Given an invoker process holding a container whose action started a child process
    invoker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        INVOKER,
        str(tmp_path / "containers"),
        kind,
        ACTIONS[kind]["spawn"],
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    assert invoker.stdout is not None
    pids = json.loads(await asyncio.wait_for(invoker.stdout.readline(), timeout=20))
    # (the default Python kind is forked by the zygote: the runtime and its child)
    forked = kind == "python:3.13"
    assert len(pids) == (2 if forked else 4) and not any(gone(pid) for pid in pids)
    # When the invoker is killed without any chance to clean up
    invoker.kill()
    await invoker.wait()
    # Then every process of the container goes too
    assert await until(lambda: all(gone(pid) for pid in pids))
    # And the next factory on that directory cleans up the directory and the cgroup left
    factory = ProcessContainerFactory(tmp_path / "containers", "https://api")
    try:
        # (a directory, its cgroup and the supervisor's; and the zygote's when there was one)
        assert factory.leftovers == (4 if forked else 3)
        assert entries(tmp_path / "containers") == []
    finally:
        await factory.close()


async def test_node_concurrency_lets_runs_overlap(factory: ProcessContainerFactory) -> None:
    # Given a Node container started with concurrency 3, running an action that only
    # answers once three activations are inside it at the same time
    container = await factory.create("nodejs:20", 256, {"__OW_CONCURRENCY": "3"})
    code = """const waiting = [];
        function main(p) { console.log('run', p.n); return new Promise((resolve) => {
          waiting.push(resolve);
          if (waiting.length === 3) waiting.forEach((r) => r({together: waiting.length}));
        }) }"""
    assert (await container.initialize({"code": code}, timeout=10)).status == 200
    # When three runs are sent at once
    answers = await asyncio.gather(
        *(container.run({"value": {"n": n}}, timeout=5) for n in range(3))
    )
    # Then all three completed together
    assert [json.loads(a.body) for a in answers] == [{"together": 3}] * 3
    # And logs, unsplit, return what arrived without waiting for sentinels
    # (asked to wait an hour for them: only a hang past the test's deadline fails it)
    logs = await asyncio.wait_for(container.logs(10_000, wait=3600), DEADLINE_S)
    assert sorted(line.text for line in logs.lines) == ["run 0", "run 1", "run 2"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("idle", [False, True], ids=["cold", "stem-cell"])
async def test_a_containers_first_connection_is_made_before_its_runtime_starts(
    factory: ProcessContainerFactory, monkeypatch: pytest.MonkeyPatch, kind: str, idle: bool
) -> None:
    # Given the connections the invoker's HTTP client opens, counted
    connects: list[str] = []
    connect = UnixHttpClient._connect

    async def counted(client: UnixHttpClient, deadline: float | None) -> Any:
        connects.append(client._path)
        return await connect(client, deadline)

    monkeypatch.setattr(UnixHttpClient, "_connect", counted)
    # When a runtime is started (from nothing, or idle as a stem cell), initialized and
    # run twice
    container = await factory.create(kind, 256, idle=idle)
    answer = await container.initialize({"code": ACTIONS[kind]["chatty"]}, timeout=10)
    assert answer.status == 200, answer.body
    for n in range(2):
        assert json.loads((await container.run({"value": {"n": n}}, timeout=10)).body) == {"n": n}
    # Then every request went over the connection made before the spawn, which waited in
    # the listening socket's backlog: none was opened on a request's path
    assert connects == []
    logs = await container.logs(limit_bytes=10_000, wait=5)
    assert [line.text for line in logs.lines if line.stream == "stdout"][-2:] == ["out 1", "out2 1"]


async def test_a_node_runtime_keeps_one_v8_background_thread(
    factory: ProcessContainerFactory,
) -> None:
    # Given a Node.js container whose action counts its process's threads (synchronous
    # reads only: libuv's own pool is not started by them)
    container = await factory.create("nodejs:20", 256)
    code = """function main() {
        const fs = require('fs');
        return {threads: fs.readdirSync('/proc/self/task').length, argv: process.execArgv} }"""
    assert (await container.initialize({"code": code}, timeout=10)).status == 200
    # When it runs after the proxy served its /init and /run
    answer = await container.run({"value": {}}, timeout=10)
    # Then the runtime has the main thread, one V8 worker, V8's delayed-task scheduler and
    # the signal watchdog: not Node's default four V8 workers (7 threads), each of which
    # keeps a malloc arena and a stack of its own in every container
    answered = json.loads(answer.body)
    assert answered["threads"] <= 4
    # And V8 optimizes on the main thread: compiles on the worker left ~0.8 MiB more
    # private memory in a runtime that served 2000 runs (bench/node_flags.py)
    assert "--no-concurrent-recompilation" in answered["argv"]


async def test_the_runtime_environment_is_minimal(
    factory: ProcessContainerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a secret in the invoker's environment
    monkeypatch.setenv("SQUALL_TEST_SECRET", "leak")
    container = await factory.create("python:3.13", 256, {"EXTRA": "1"})
    code = "import os\ndef main(p):\n    return dict(os.environ)"
    assert (await container.initialize({"code": code}, timeout=10)).status == 200
    # When the action lists its environment
    env = json.loads((await container.run({"value": {}}, timeout=10)).body)
    # Then only the explicit variables are there, and home is the sandbox's own /tmp
    assert "SQUALL_TEST_SECRET" not in env
    assert env["HOME"] == "/tmp"
    assert env["__OW_API_HOST"] == "https://api.example.test"
    assert env["EXTRA"] == "1"
    assert set(env) <= {"PATH", "HOME", "LANG", "EXTRA", "LC_CTYPE", "PWD"} | {
        k for k in env if k.startswith("__OW_")
    }


async def test_pause_freezes_and_resume_continues(factory: ProcessContainerFactory) -> None:
    # Given a warm container
    container = await started(factory, "python:3.13", "chatty")
    assert container.cgroup is not None
    members = container.cgroup.pids()
    # (bubblewrap's monitor, init, the runtime; a zygote-forked one is its runtime alone)
    expected = 1 if factory.zygote is not None else 3
    assert container.pid in members and container.sandbox_pid in members
    assert len(members) == expected
    # When it is paused, Then its cgroup is frozen, and with it every process of it
    container.pause()
    assert await until(lambda: all(_state(pid) == "D" for pid in members))
    # When it is resumed, Then it runs again
    container.resume()
    answer = await container.run({"value": {"n": 7}}, timeout=10)
    assert json.loads(answer.body) == {"n": 7}


async def test_a_paused_container_can_be_destroyed(factory: ProcessContainerFactory) -> None:
    # Given a paused container
    container = await started(factory, "nodejs:20", "chatty")
    assert container.cgroup is not None
    members = container.cgroup.pids()
    container.pause()
    assert await until(lambda: all(_state(pid) == "D" for pid in members))
    # When it is destroyed, Then its cgroup is gone (it was empty: every process of it
    # exited) and every process of it is dead (a zombie may wait a moment for its reaper)
    await container.destroy()
    assert not any(d.exists() for d in container.cgroup.directories)
    assert all(gone(pid) for pid in members)
    assert await until(lambda: all(reaped(pid) for pid in members))


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


async def test_an_answer_over_the_maximum_is_truncated(tmp_path: Path, anyio_backend: str) -> None:
    # Given a factory allowing 1000-byte answers and an action answering 5000 bytes
    factory = ProcessContainerFactory(tmp_path, "https://api", max_response_bytes=1000)
    try:
        container = await factory.create("nodejs:20", 256)
        code = "function main() { return {s: 'y'.repeat(5000)} }"
        assert (await container.initialize({"code": code}, timeout=10)).status == 200
        # When it runs
        answer = await container.run({"value": {}}, timeout=10)
        # Then the body was cut at 1000 bytes and the full size is known
        assert (len(answer.body), answer.truncated, answer.full_size) == (1000, True, 5008)
        # And the container still answers afterwards (on a new connection)
        assert (await container.run({"value": {}}, timeout=10)).full_size == 5008
    finally:
        await factory.close()


async def test_a_long_work_directory_path_still_works(tmp_path: Path, anyio_backend: str) -> None:
    # Given a work directory so deep that the socket path exceeds sun_path
    workdir = tmp_path / ("w" * 70) / ("v" * 40)
    factory = ProcessContainerFactory(workdir, "https://api")
    try:
        # When a container is created and runs, Then the socket was reachable
        for kind, code in (
            ("nodejs:20", "function main() { return {ok: 1} }"),
            ("python:3.13", "def main(p):\n    return {'ok': 1}"),
        ):
            container = await factory.create(kind, 256)
            assert len(str(container.directory / "proxy.sock")) > 108
            assert (await container.initialize({"code": code}, timeout=10)).status == 200
            assert json.loads((await container.run({"value": {}}, timeout=10)).body) == {"ok": 1}
    finally:
        await factory.close()


async def test_a_runtime_that_cannot_start_leaves_nothing_behind(
    tmp_path: Path, anyio_backend: str
) -> None:
    # Given a factory whose "node" exits at once
    found = detect(load_manifest())
    false = shutil.which("false")
    assert false is not None
    broken = {**found.interpreters, "nodejs:20": Interpreter("nodejs:20", false, "20")}
    factory = ProcessContainerFactory(
        tmp_path, "https://api", runtimes=Runtimes(found.manifest, broken)
    )
    try:
        # When a container is created, Then ContainerError, and no directory remains
        with pytest.raises(ContainerError, match="did not start"):
            await factory.create("nodejs:20", 256)
        assert entries(tmp_path) == []
        # And an unknown kind is refused
        with pytest.raises(ContainerError, match="not supported"):
            await factory.create("java:8", 256)
    finally:
        await factory.close()


async def test_a_runtime_too_slow_to_listen_is_killed(tmp_path: Path, anyio_backend: str) -> None:
    # Given a factory that gives runtimes one millisecond to start
    factory = ProcessContainerFactory(tmp_path, "https://api", start_timeout=0.001)
    try:
        # When a container is created, Then ContainerError and nothing is left behind
        with pytest.raises(ContainerError, match="did not start"):
            await factory.create("nodejs:20", 256)
        assert entries(tmp_path) == []
        assert factory.containers == []
    finally:
        await factory.close()


async def test_close_destroys_every_container(tmp_path: Path, anyio_backend: str) -> None:
    # Given a factory with two live containers
    factory = ProcessContainerFactory(tmp_path, "https://api")
    containers = [await factory.create(kind, 128) for kind in KINDS]
    # When the factory is closed (twice)
    await factory.close()
    await factory.close()
    # Then every runtime is dead (and soon reaped), and the factory creates no more
    assert all(gone(c.pid) for c in containers)
    assert await until(lambda: all(reaped(c.pid) for c in containers))
    assert entries(tmp_path) == []
    with pytest.raises(ContainerError):
        await factory.create("nodejs:20", 128)


async def test_a_new_factory_kills_what_a_crashed_one_left(
    tmp_path: Path, anyio_backend: str
) -> None:
    # Given a container directory left by a crashed invoker, whose pid file names a live
    # runtime, and one whose pid file names a pid now used by an unrelated process
    workdir = tmp_path / "containers"
    left = await asyncio.create_subprocess_exec("sleep", "300", start_new_session=True)
    unrelated = await asyncio.create_subprocess_exec("sleep", "300", start_new_session=True)
    try:
        (workdir / "left").mkdir(parents=True)
        launch.write_pid_file(workdir / "left", left.pid)
        (workdir / "reused").mkdir()
        (workdir / "reused" / "pid").write_text(f"{unrelated.pid} 1\n")  # another start time
        # When a factory starts on that directory
        factory = ProcessContainerFactory(workdir, "https://api")
        await factory.close()
        # Then the recorded runtime was killed, the other process was not, and both
        # directories are gone
        assert await asyncio.wait_for(left.wait(), 5) == -9
        assert unrelated.returncode is None and not gone(unrelated.pid)
        assert entries(workdir) == []
    finally:
        for process in (left, unrelated):
            if process.returncode is None:
                process.kill()
                await process.wait()
