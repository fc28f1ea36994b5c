"""Where the machine's CPU goes per warm invoke at c=N, process by process (issue 12).

    .venv/bin/python bench/cpu_split.py [--rounds 2] [--seconds 5] [--connections 50]
        [--before /tmp/base] [--targets js,py,ff,floor] [--env SQUALL_X=V ...]

Starts what ``side_by_side.py`` starts — a ``squall standalone`` of this tree (and, with
``--before``, one of that tree too) with a no-op Node.js and Python action warmed,
functions-framework (ASGI, ``../shared/bench/peers/run.sh ff-asgi``) and the floor's
three-process pipeline — and loads each in turn with ``wrk -t1 -c<N>`` and ``post.lua``
exactly as ``../shared/bench/peers/bench.py`` does (2 s unmeasured warm-up, then
``--seconds`` measured). Around the measured run it reads, for EVERY process on the
machine, ``/proc/PID/stat`` (user + system CPU, all threads) and the context switches of
each of its threads, plus ``/proc/stat`` (user, system, softirq, idle time; context
switches). Per invoke it prints the CPU of every process of the target's tree grouped by
role (server, runtime, pid 1, bubblewrap, zygote, …), of wrk, of every other process on
the machine (other users' noise), the kernel's softirq time, and the context switches.
JSON to ``bench/results/cpu_split.json``; the load average with every run.

Every server is on loopback; everything started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from invoke_latency import REPO, free_port
from side_by_side import PEERS, QUIET, floor, prepare, stop, wait_for

RESULTS = REPO / "bench" / "results" / "cpu_split.json"
TICK = os.sysconf("SC_CLK_TCK")
RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
REQUESTS = re.compile(r"(\d+) requests in")
BAD = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*")


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    cmdline: str
    ticks: int  # user + system, every thread
    switches: int  # voluntary + involuntary, every live thread


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")


def snapshot() -> dict[int, Proc]:
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = _read(f"/proc/{pid}/stat")
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
            switches = 0
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    for line in _read(f"/proc/{pid}/task/{task}/status").splitlines():
                        if "ctxt_switches" in line:  # voluntary and nonvoluntary
                            switches += int(line.split()[1])
            cmdline = _read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()
            procs[pid] = Proc(pid, ppid, comm, cmdline[:200], utime + stime, switches)
    return procs


def machine() -> dict[str, int]:
    """/proc/stat: CPU time by kind (ticks) and context switches."""
    out = {}
    for line in _read("/proc/stat").splitlines():
        parts = line.split()
        if parts[0] == "cpu":
            names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
            out.update({n: int(v) for n, v in zip(names, parts[1:9], strict=True)})
        elif parts[0] == "ctxt":
            out["ctxt"] = int(parts[1])
    return out


def descendants(procs: dict[int, Proc], root: int) -> set[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for p in procs.values():
        children[p.ppid].append(p.pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in procs and pid not in found:
            found.add(pid)
            todo.extend(children[pid])
    return found


def role(proc: Proc, roots: list[int], procs: dict[int, Proc]) -> str:
    """A short name for what this process of a target's tree is."""
    cmd = proc.cmdline
    if "zygote" in cmd and not any(
        p.ppid == proc.pid and "zygote" in p.cmdline for p in procs.values()
    ):
        return "runtime python (forked)"  # a fork keeps its zygote's command line
    for needle, name in (
        ("bwrap", "bubblewrap"),
        ("pid1", "pid 1"),
        ("zygote", "zygote"),
        ("proxy.js", "runtime node"),
        ("warmup.js", "runtime node (stem)"),
        ("proxy", "runtime python"),
        ("runtime.py", "floor runtime"),
        ("invoker.py", "floor invoker"),
        ("controller.py", "floor controller"),
        ("functions-framework", "functions-framework"),
    ):
        if needle in cmd:
            return name
    return "server (root)" if proc.pid in roots else proc.comm


@contextlib.contextmanager
def standalone(
    tree: Path, tmp: Path, extra: dict[str, str] | None = None
) -> Iterator[tuple[dict[str, str], str, int]]:
    """A ``squall standalone`` of ``tree`` as side_by_side.py runs it: URLs, auth, pid."""
    port = free_port()
    home = tmp / "home"
    args = [sys.executable, "-m", "squall.cli.main", "standalone", "--port", str(port)]
    args += ["--home", str(home), "--keep-warm", "3600"]
    env = {**os.environ, **QUIET, "PYTHONPATH": str(tree), **(extra or {})}
    with open(tmp / "standalone.log", "wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tree,
            start_new_session=True,
        )  # fmt: skip
    try:
        api_host = f"http://127.0.0.1:{port}"
        wait_for(f"{api_host}/api/v1", process, "squall standalone")
        auth = next(
            line.split("=", 1)[1]
            for line in (home / "wskprops").read_text().splitlines()
            if line.startswith("AUTH=")
        )
        uid, _, key = auth.partition(":")
        yield prepare(api_host, (uid, key)), auth, process.pid
    finally:
        stop(process)


@contextlib.contextmanager
def functions_framework() -> Iterator[tuple[str, int]]:
    port = free_port()
    process = subprocess.Popen(
        ["bash", str(PEERS / "run.sh"), "ff-asgi", str(port)], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        end = time.monotonic() + 30
        while time.monotonic() < end:
            with contextlib.suppress(httpx.TransportError):
                if httpx.post(url, json={}, timeout=2, trust_env=False).status_code < 300:
                    break
            time.sleep(0.1)
        yield url, process.pid
    finally:
        stop(process)


def wrk(url: str, auth: str, connections: int, seconds: int) -> str:
    """Run wrk as bench.py does; its output (its CPU: ``os.times()`` of our children)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["-s", str(PEERS / "post.lua"), url]
    env = {**os.environ, "WRK_BODY": '{"hello":"world"}', "WRK_AUTH": auth}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out, _ = process.communicate(timeout=seconds + 60)
    return out.decode()


def measure(
    label: str, url: str, auth: str, roots: list[int], connections: int, seconds: int
) -> dict[str, Any]:
    wrk(url, auth, connections, 2)  # unmeasured warm-up at this concurrency
    load = _read("/proc/loadavg").split()[:3]
    children = os.times()
    m0, p0 = machine(), snapshot()
    out = wrk(url, auth, connections, seconds)
    p1, m1 = snapshot(), machine()
    children1 = os.times()
    counted, rate = REQUESTS.search(out), RPS.search(out)
    requests = int(counted.group(1)) if counted else 0
    rps = float(rate.group(1)) if rate else 0.0
    bad = [m.group(0) for m in BAD.finditer(out)]
    per = 1000.0 / TICK / max(requests, 1)  # ticks -> ms per invoke
    tree: set[int] = set()
    for root in roots:
        tree |= descendants(p1, root)
    groups: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    busiest: list[dict[str, Any]] = []  # the tree's processes, for a look at the spread
    for pid, proc in p1.items():
        before = p0.get(pid)
        if before is not None and before.comm != proc.comm and before.cmdline != proc.cmdline:
            before = None
        ticks = proc.ticks - (before.ticks if before else 0)
        switches = proc.switches - (before.switches if before else 0)
        if pid in tree:
            name = role(proc, roots, p1)
        elif proc.comm == "wrk":
            continue  # counted from os.times() below
        else:
            name = "(other processes)"
        if pid in tree and ticks:
            busiest.append({"pid": pid, "role": name, "cpu_ms": ticks * per, "switches": switches})
        group = groups[name]
        group["cpu_ms"] += ticks * per
        group["switches"] += switches / max(requests, 1)
        group["processes"] += 1 if ticks or switches else 0
    wrk_s = (children1.children_user + children1.children_system) - (
        children.children_user + children.children_system
    )
    groups["wrk"]["cpu_ms"] = wrk_s * 1000 / max(requests, 1)
    groups["wrk"]["processes"] = 1
    kinds = {k: (m1[k] - m0[k]) * per for k in m0 if k != "ctxt"}
    return {
        "target": label,
        "requests": requests,
        "rps": rps,
        "bad": bad,
        "loadavg_before": load,
        "loadavg_after": _read("/proc/loadavg").split()[:3],
        "groups": {k: dict(v) for k, v in groups.items()},
        "processes": sorted(busiest, key=lambda row: -row["cpu_ms"]),
        "machine_ms": kinds,
        "machine_busy_ms": sum(v for k, v in kinds.items() if k not in ("idle", "iowait")),
        "ctxt": (m1["ctxt"] - m0["ctxt"]) / max(requests, 1),
    }


def report(runs: list[dict[str, Any]]) -> None:
    by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_target[run["target"]].append(run)
    for target, rows in by_target.items():
        med = statistics.median
        print(f"\n{target}: {med(r['rps'] for r in rows):.0f} req/s, "
              f"load {[r['loadavg_before'][0] for r in rows]} "
              f"(medians of {len(rows)} runs, per invoke)")  # fmt: skip
        names = sorted({n for r in rows for n in r["groups"]})
        table = []
        for name in names:
            cpu = med(r["groups"].get(name, {}).get("cpu_ms", 0.0) for r in rows)
            sw = med(r["groups"].get(name, {}).get("switches", 0.0) for r in rows)
            n = med(r["groups"].get(name, {}).get("processes", 0.0) for r in rows)
            table.append((cpu, name, sw, n))
        print(f"  {'process group':28} {'CPU ms':>7} {'ctx sw':>7} {'procs':>5}")
        for cpu, name, sw, n in sorted(table, reverse=True):
            print(f"  {name:28} {cpu:7.3f} {sw:7.2f} {n:5.0f}")
        kinds = {k: med(r["machine_ms"][k] for r in rows) for k in rows[0]["machine_ms"]}
        print("  machine (/proc/stat): " + ", ".join(
            f"{k} {v:.3f}" for k, v in kinds.items() if v) + f" ms; busy "
            f"{med(r['machine_busy_ms'] for r in rows):.3f} ms; "
            f"ctxt {med(r['ctxt'] for r in rows):.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--before", type=Path, help="a git archive of main to compare with")
    parser.add_argument("--targets", default="js,py,ff,floor")
    parser.add_argument(
        "--env", action="append", default=[], metavar="K=V",
        help="an environment variable for this tree's standalone only (e.g. a setting)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    wanted = args.targets.split(",")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="squall-cpu-") as tmp, contextlib.ExitStack() as stack:
        targets: list[tuple[str, str, str, list[int]]] = []
        trees = [("", REPO)] + ([("before ", args.before)] if args.before else [])
        for prefix, tree in trees:
            where = Path(tmp) / (prefix.strip() or "after")
            where.mkdir()
            extra = dict(kv.split("=", 1) for kv in args.env) if not prefix else {}
            urls, auth, pid = stack.enter_context(standalone(tree, where, extra))
            for short in ("js", "py"):
                if short in wanted:
                    targets.append((f"{prefix}squall-{short}", urls[short], auth, [pid]))
        if "ff" in wanted:
            url, pid = stack.enter_context(functions_framework())
            targets.append(("ff-asgi", url, "", [pid]))
        if "floor" in wanted:
            url = stack.enter_context(floor())
            names = ("runtime.py 19101", "invoker.py", "controller.py 19100")
            pids = [p.pid for p in snapshot().values() if any(s in p.cmdline for s in names)]
            targets.append(("floor", url, "", pids))
        for round_ in range(args.rounds):
            order = targets[round_ % len(targets) :] + targets[: round_ % len(targets)]
            for label, url, auth, roots in order:
                run = measure(label, url, auth, roots, args.connections, args.seconds)
                run["round"] = round_
                runs.append(run)
                print(f"round {round_} {label}: {run['rps']:.0f} req/s, "
                      f"load {run['loadavg_before']}", flush=True)  # fmt: skip
    report(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"connections": args.connections, "env": args.env, "before": str(args.before)}
    args.out.write_text(json.dumps({**meta, "runs": runs}, indent=1))
    print(f"\nresults in {args.out}")


if __name__ == "__main__":
    main()
