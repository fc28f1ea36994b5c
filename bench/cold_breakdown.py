"""Where one true cold start goes: bubblewrap, confinement, interpreter, proxy, /init, /run.

    .venv/bin/python bench/cold_breakdown.py [--kind python:3.13] [--samples 20] [--strace]
    .venv/bin/python bench/cold_breakdown.py --kind nodejs:20 --samples 20
    .venv/bin/python bench/cold_breakdown.py --before /tmp/base-cold   # two trees in turns

A ``ProcessContainerFactory`` without zygote and without network (``--network``: with
one, the default egress rules), isolated as the invoker runs sandboxes, starts a no-op
action ``--samples`` times: create, ``/init``, first ``/run``, destroy. The invoker's
side is timed by wrapping the functions it calls on the way (``time.monotonic_ns``,
which the sandboxes share), so every sample gives:

- ``spawn``: from ``create`` to the supervisor's answer (bubblewrap forked, as the
  sandbox's host uid, not yet exec'd: container directory, socket, pipes, cgroup limits);
- ``namespaces``: until bubblewrap reported its sandbox's pid on ``--info-fd`` (its
  exec, and the clone that makes the namespaces);
- ``cgroup move``: the two processes written into the container's cgroups (in a worker
  thread; bubblewrap mounts the sandbox's file system meanwhile); 0 where bubblewrap,
  born in its cgroup, is not held on a block pipe (no network, or a prepared one);
- ``go``: until the block pipe was written (the cgroup move and the network, if any),
  or, without a block pipe, until the invoker checked the processes' cgroups (the
  sandbox goes on meanwhile);
- ``interpreter+proxy``: from ``go`` to the ready byte (bubblewrap's last steps, the
  interpreter's start, the proxy's imports, its listening socket);
- ``ready→create``, ``/init``, ``first /run``: the rest of the invoker's cold start;
- ``sandbox cpu``: the CPU time the container's processes used from their birth through
  the first ``/run`` (steadier than the wall times when other work loads the machine).

``--strace`` adds one sample traced (``strace -f --seccomp-bpf`` on the supervisor's
pid 1, only the system calls that mark a phase: exec, clone, mount, pivot_root, the
ready byte's write): what happens inside bubblewrap and how long the interpreter runs
before the proxy's first line. Tracing slows every traced call: read it for the order
and the shares, the untraced samples for the time. ``--importtime`` runs one sample
with ``python -X importtime`` (Python only) and prints the proxy's imports.

With ``--before TREE`` (e.g. ``git archive main squall | tar -x -C TREE``) the same
samples are taken with that tree's ``squall`` package in a second process, the two
trees taking turns sample by sample, so load changes hit both alike.

Writes ``bench/results/cold_breakdown.json``; prints the load average with the table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "cold_breakdown.json"
PYTHON_NOOP = "def main(args):\n    return {}\n"
ACTIONS = {
    "python:3.13": PYTHON_NOOP,
    "python:3.11": PYTHON_NOOP,
    "nodejs:20": "function main(params) { return {}; }",
}
PAYLOAD = {
    "value": {"name": "bench"},
    "namespace": "guest",
    "action_name": "noop",
    "activation_id": "0" * 32,
    "transaction_id": "t" * 32,
    "deadline": "0",
}
PHASES = (
    "spawn",
    "namespaces",
    "cgroup move",
    "go",
    "interpreter+proxy",
    "ready->create",
    "/init",
    "first /run",
    "cold",
    "sandbox cpu",
)
TRACED = "execve,clone,clone3,vfork,mount,pivot_root,umask,write,accept4"


class Marks:
    """Monotonic timestamps of the current sample, by name (first one wins)."""

    def __init__(self) -> None:
        self.at: dict[str, int] = {}

    def mark(self, name: str) -> None:
        self.at.setdefault(name, time.monotonic_ns())


def instrument(marks: Marks) -> None:
    """Wrap what the bubblewrap start path calls, to note when each step ends."""
    from squall.sandbox import isolation, launch, sandboxstart, supervisor

    spawn = supervisor.Supervisor.spawn

    async def timed_spawn(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = await spawn(self, *args, **kwargs)
        marks.mark("spawned")
        return result

    supervisor.Supervisor.spawn = timed_spawn  # type: ignore[method-assign]
    read_to_eof = isolation._read_to_eof

    async def timed_read(fd: int) -> bytes:
        data = await read_to_eof(fd)
        marks.mark("info")
        return data

    isolation._read_to_eof = timed_read
    attach = isolation._attach

    def timed_attach(*args: Any) -> None:
        marks.mark("attach start")
        attach(*args)
        marks.mark("attach end")

    isolation._attach = timed_attach  # type: ignore[assignment]
    confine = getattr(sandboxstart, "confine")  # noqa: B009 (not exported, patched here)

    async def timed_confine(*args: Any, **kwargs: Any) -> Any:
        result = await confine(*args, **kwargs)
        marks.mark("go")
        return result

    setattr(sandboxstart, "confine", timed_confine)  # noqa: B010
    wait_ready = launch.wait_ready

    async def timed_ready(fd: int, timeout: float) -> bool:
        ready = await wait_ready(fd, timeout)
        marks.mark("ready")
        return ready

    launch.wait_ready = timed_ready


def phases(at: dict[str, int]) -> dict[str, float]:
    """Milliseconds per phase of one sample."""

    def ms(a: str, b: str) -> float:
        # No move when bubblewrap was born in its cgroup and did not wait (no block pipe).
        if a not in at:
            return 0.0
        return round((at[b] - at[a]) / 1e6, 3)

    return {
        "spawn": ms("start", "spawned"),
        "namespaces": ms("spawned", "info"),
        "cgroup move": ms("attach start", "attach end"),
        "go": ms("info", "go"),
        "interpreter+proxy": ms("go", "ready"),
        "ready->create": ms("ready", "created"),
        "/init": ms("created", "initialized"),
        "first /run": ms("initialized", "ran"),
        "cold": ms("start", "ran"),
    }


NETWORK = {"on": False}


async def sample(factory: Any, kind: str, marks: Marks) -> dict[str, float]:
    marks.at = {}
    marks.mark("start")
    container = await factory.create(kind, 256, network=NETWORK["on"])
    marks.mark("created")
    answer = await container.initialize({"name": "noop", "code": ACTIONS[kind]}, timeout=10)
    marks.mark("initialized")
    run = await container.run(PAYLOAD, timeout=10)
    marks.mark("ran")
    cpu = cpu_ms(container)
    assert answer.status == 200 and run.status == 200, (answer, run)
    await container.logs(1 << 20, wait=5)
    await container.destroy()
    return {**phases(marks.at), "sandbox cpu": cpu}


def cpu_ms(container: Any) -> float:
    """CPU time (ms) every thread of the container's processes used since it was born
    (``/proc/PID/task/TID/schedstat``): bubblewrap, the sandbox's init, the runtime,
    through its first /run; steadier than wall times on a loaded machine."""
    total = 0
    for pid in container.cgroup.pids():
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                    total += int(stat.read().split()[0])
    return round(total / 1e6, 3)


def pid1_of(factory: Any) -> int:
    launcher = factory.supervisor._process.pid
    return int(Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()[0])


async def traced(factory: Any, kind: str, marks: Marks, out: Path) -> dict[str, Any]:
    """One sample under strace; the in-sandbox events relative to the invoker's marks."""
    tracer = start_strace(pid1_of(factory), out)
    await asyncio.sleep(1.0)  # attached
    offset = time.time_ns() - time.monotonic_ns()
    try:
        timed = await sample(factory, kind, marks)
    finally:
        await asyncio.sleep(0.3)
        tracer.terminate()
        tracer.wait()
    zero = marks.at["start"] + offset
    events: list[tuple[float, str]] = [
        (round((t + offset - zero) / 1e6, 3), f"invoker: {name}") for name, t in marks.at.items()
    ]
    events += strace_events(out, zero)
    events.sort()
    return {"phases": timed, "events": events}


def start_strace(pid: int, out: Path) -> subprocess.Popen[bytes]:
    options = ["-f", "--seccomp-bpf", "-e", f"trace={TRACED}", "-e", "signal=none"]
    options += ["--timestamps=unix,ns", "-o", str(out), "-p", str(pid)]
    return subprocess.Popen(["strace", *options], stderr=subprocess.DEVNULL)


def strace_events(out: Path, zero: int) -> list[tuple[float, str]]:
    """strace's lines as (ms after ``zero``, pid and call)."""
    events = []
    line = re.compile(r"^(\d+) +(\d+)\.(\d+) (.*)$")
    for text in out.read_text().splitlines():
        found = line.match(text)
        if found is None:
            continue
        pid, sec, frac, call = found.groups()
        stamp = int(sec) * 10**9 + int(frac.ljust(9, "0")[:9])
        events.append((round((stamp - zero) / 1e6, 3), f"{pid}: {call[:110]}"))
    return events


async def importtime(factory: Any, kind: str, marks: Marks) -> str:
    """One Python sample with ``-X importtime``: the proxy's import lines (stderr)."""
    argv = factory._argv

    def with_importtime(kind: str) -> Any:
        command, binds = argv(kind)
        return [command[0], "-X", "importtime", *command[1:]], binds

    factory._argv = with_importtime
    try:
        marks.at = {}
        marks.mark("start")
        container = await factory.create(kind, 256, network=False)
        await asyncio.sleep(0.2)
        text = container.logs_text() if hasattr(container, "logs_text") else None
        if text is None:
            text = container._logs.text("stderr")
        await container.destroy()
        return str(text)
    finally:
        factory._argv = argv


async def run_samples(kind: str, samples: int, extra: dict[str, Any]) -> dict[str, Any]:
    from squall.sandbox.process import ProcessContainerFactory

    marks = Marks()
    instrument(marks)
    result: dict[str, Any] = {"samples": []}
    with tempfile.TemporaryDirectory(prefix="squall-cold-") as tmp:
        network = None
        if NETWORK["on"]:
            from squall.sandbox.egress import EgressPolicy
            from squall.sandbox.network import SandboxNetwork

            network = SandboxNetwork(EgressPolicy(), None)
        factory = ProcessContainerFactory(
            Path(tmp), "http://127.0.0.1:3233", zygote=False, network=network
        )
        try:
            for _ in range(2):  # untimed: files in the page cache
                await sample(factory, kind, marks)
            if extra.get("turns"):
                # Taking turns with another process: one sample per line read.
                for line in sys.stdin:
                    if line.strip() != "go":
                        break
                    print(json.dumps(await sample(factory, kind, marks)), flush=True)
                return result
            for _ in range(samples):
                result["samples"].append(await sample(factory, kind, marks))
            if extra.get("strace"):
                result["trace"] = await traced(factory, kind, marks, Path(tmp) / "strace.txt")
            if extra.get("importtime") and kind.startswith("python:"):
                result["importtime"] = await importtime(factory, kind, marks)
        finally:
            await factory.close()
    return result


def summarize(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for phase in PHASES:
        values = sorted(s[phase] for s in samples)
        out[phase] = {
            "p50_ms": round(statistics.median(values), 2),
            "p90_ms": round(values[min(len(values) - 1, int(0.9 * len(values)))], 2),
        }
    return out


def print_table(columns: dict[str, dict[str, dict[str, float]]], load: tuple[float, float]) -> None:
    names = list(columns)
    print(f"{'phase (ms, p50 / p90)':<22}" + "".join(f"{n:>22}" for n in names))
    for phase in PHASES:
        cells = [
            f"{columns[n][phase]['p50_ms']:.2f} / {columns[n][phase]['p90_ms']:.2f}" for n in names
        ]
        print(f"{phase:<22}" + "".join(f"{c:>22}" for c in cells))
    print(f"load average (1 min) before {load[0]:.2f}, after {load[1]:.2f}")


def turns(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """This tree and ``--before`` in two processes, one sample each in turn."""
    procs = {}
    for name, tree in (("after", REPO), ("before", args.before)):
        env = {**os.environ, "PYTHONPATH": str(tree)}
        procs[name] = subprocess.Popen(
            [sys.executable, __file__, "--kind", args.kind, "--turns"]
            + (["--network"] if args.network else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
    got: dict[str, list[dict[str, float]]] = {name: [] for name in procs}
    try:
        for i in range(args.samples):
            order = list(procs) if i % 2 else list(procs)[::-1]
            for name in order:
                proc = procs[name]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
                got[name].append(json.loads(proc.stdout.readline()))
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=60)
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="python:3.13", choices=sorted(ACTIONS))
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--strace", action="store_true")
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--before", type=Path, help="a tree to compare with, in turns")
    parser.add_argument("--network", action="store_true", help="sandboxes with a network")
    parser.add_argument("--turns", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    NETWORK["on"] = args.network
    if args.turns:
        asyncio.run(run_samples(args.kind, 0, {"turns": True}))
        return
    load_before = os.getloadavg()[0]
    report: dict[str, Any] = {"kind": args.kind, "samples": args.samples}
    if args.before is not None:
        got = turns(args)
        columns = {name: summarize(samples) for name, samples in got.items()}
        report["raw"] = got
    else:
        sys.path.insert(0, str(REPO))
        options = {"strace": args.strace, "importtime": args.importtime}
        result = asyncio.run(run_samples(args.kind, args.samples, options))
        columns = {"this tree": summarize(result["samples"])}
        report.update(result)
        for at, event in result.get("trace", {}).get("events", []):
            print(f"{at:>10.3f} ms  {event}")
        if "importtime" in result:
            print(result["importtime"])
    load = (load_before, os.getloadavg()[0])
    network = "a network (egress)" if args.network else "no network"
    print(f"{args.kind} true cold starts ({network}), {args.samples} samples")
    print_table(columns, load)
    report["columns"] = columns
    report["load_average_1min"] = {"before": load[0], "after": load[1]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
