"""Memory at concurrency (issue 12, part 4): what 50 concurrent invokes of a noop leave.

    .venv/bin/python bench/memory_at_concurrency.py [--connections 50] [--duration 5]
        [--requests 500] [--only python,nodejs,nodejs-c50] [--baseline DIR [--rounds N]]

For each scenario it starts a ``squall standalone`` of its own (temporary home, throttles
out of the way, isolation, sandbox network and the default stem cells on, as a user runs
it), so one scenario's containers never count in another's figures:

- ``python``: a no-op ``python:default`` action (concurrency 1; forked by the zygote);
- ``nodejs``: a no-op ``nodejs:default`` action (concurrency 1, OpenWhisk's default);
- ``nodejs-c50``: the same with ``limits.concurrency`` 50 (runs share a container).

Each scenario: one invoke (so the action has run once), a warm stream of ``--requests``
blocking invokes on one keep-alive connection (p50/p99), then ``--connections`` keep-alive
connections in a closed loop for ``--duration`` s (``bench/load.js``; req/s, errors),
then, after a second's rest, the platform's figures:

- processes and PSS of the platform: the server process and every descendant (sandboxes,
  zygote, stem cells), PSS summed from ``/proc/PID/smaps_rollup`` (as ``smem`` does);
- warm containers (assigned to the action) and stem cells, from ``GET /metrics``;
- per warm container: its processes (those of its memory cgroup plus the sandbox's monitor,
  the parent of the cgroup's first process, unless that is the zygote) and their PSS and
  private dirty memory (what other processes on the host cannot move); containers per
  GiB = 1024 / PSS;
- the tree by role and the server by mapping (``tree_memory.py``: server, supervisor,
  zygote, containers by kind; Python heap, extensions, libraries);
- the issue's goal: platform PSS <= 4 x the best Python peer's (functions-framework, 38 MB
  in the issue's run, ``--peer-pss-mb``) + 2 MB per warm container.

``--env KEY=VALUE`` adds to every server's environment (a variant, e.g.
``SQUALL_WARM_WAIT_MS=100``). ``--rounds N`` (with ``--baseline``) runs both trees N
times, taking turns, the order swapped every round. The 1-minute load average is
recorded before and after. Prints a table and writes
``bench/results/memory_at_concurrency.json``. Only loopback addresses are targeted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from invoke_latency import (
    REPO,
    load,
    own_server,
    report_head,
)
from tree_memory import by_mapping, by_role, roles

RESULTS = REPO / "bench" / "results" / "memory_at_concurrency.json"
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")
MEMORY_MB = 256
#: scenario → (kind, code, limits.concurrency)
SCENARIOS: dict[str, tuple[str, str, int]] = {
    "python": ("python:default", "def main(args):\n    return {}\n", 1),
    "nodejs": ("nodejs:default", "function main() { return {}; }", 1),
    "nodejs-c50": ("nodejs:default", "function main() { return {}; }", 50),
}
WARM_STATES = ("ready", "busy", "paused", "initializing")


# -- /proc -----------------------------------------------------------------------------


def parents() -> dict[int, int]:
    """pid → ppid of every process on the host."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def tree(root: int, ppids: dict[int, int]) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def pss_kb(pid: int) -> float:
    return memory_kb(pid)[0]


def memory_kb(pid: int) -> tuple[float, float]:
    """``pid``'s PSS and private dirty memory (``Private_Dirty``: the pages it wrote that
    no other process maps — heaps, stacks), in kB. Other work on the host moves PSS (its
    share of a binary's pages) and even USS (a binary's clean pages count as private
    while no other process maps them), not this."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("Pss", "Private_Dirty"):
                found[name] = float(value.split()[0])
    return found.get("Pss", 0.0), found.get("Private_Dirty", 0.0)


def is_zygote(pid: int, ppids: dict[int, int]) -> bool:
    """Whether ``pid`` is a Python zygote (shared by a namespace's containers)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        parent = Path(f"/proc/{ppids.get(pid, 0)}/comm").read_text().strip()
    except OSError:
        return False
    return b"zygote.py" in command and parent == "bwrap"


def containers_of(pids: set[int], ppids: dict[int, int], server: int) -> list[list[int]]:
    """The processes of each action container among ``pids``: its memory cgroup's (a leaf
    under squall*, limited to MEMORY_MB) plus the sandbox monitor above them when it is
    not in the cgroup and exists for it alone (the per-container monitor a zygote forked
    before its containers' inits were cloned straight into their namespaces; never the
    zygote itself, whose parent is bubblewrap; bubblewrap's monitor is moved in with the
    rest)."""
    found = []
    # os.walk skips what vanishes meanwhile (other invokers on the host come and go).
    for top in CGROUP_MEMORY.glob("squall*"):
        for path, dirs, _ in os.walk(top):
            if dirs:
                continue
            d = Path(path)
            with contextlib.suppress(OSError, ValueError):
                limit = int((d / "memory.limit_in_bytes").read_text()) // 2**20
                members = {int(x) for x in (d / "cgroup.procs").read_text().split()}
                if limit != MEMORY_MB or not members or not members <= pids:
                    continue
                monitors = {ppids[p] for p in members if ppids.get(p) not in members}
                monitors -= {server} | {m for m in monitors if is_zygote(m, ppids)}
                found.append(sorted(members | monitors))
    return found


def metrics(apihost: str) -> dict[str, int]:
    """``squall_invoker_containers`` by state."""
    text = httpx.get(f"{apihost}/metrics", trust_env=False).text
    counts: dict[str, int] = {}
    for m in re.finditer(r"^squall_invoker_containers\{([^}]*)\} (\S+)$", text, re.M):
        state = re.search(r'state="([^"]+)"', m.group(1))
        if state:
            counts[state.group(1)] = counts.get(state.group(1), 0) + int(float(m.group(2)))
    return counts


def platform(apihost: str, pid: int) -> dict[str, Any]:
    ppids = parents()
    pids = tree(pid, ppids)
    memory = {p: memory_kb(p) for p in pids}
    pss = {p: m[0] for p, m in memory.items()}
    dirty = {p: m[1] for p, m in memory.items()}
    found = containers_of(set(pids), ppids, pid)
    per = [sum(pss[p] for p in c) / 1024 for c in found]
    per_dirty = [sum(dirty[p] for p in c) / 1024 for c in found]
    counts = metrics(apihost)
    warm = sum(counts.get(s, 0) for s in WARM_STATES)
    return {
        "by_role": by_role(pss, roles(pids, ppids, pid), dirty),
        "server_by_mapping": by_mapping(pid),
        "processes": len(pids),
        "pss_mb": round(sum(pss.values()) / 1024, 1),
        "server_pss_mb": round(pss[pid] / 1024, 1),
        "containers_by_state": counts,
        "warm_containers": warm,
        "stem_cells": counts.get("prewarmed", 0) + counts.get("starting", 0),
        "container_cgroups": len(per),
        "processes_per_container": (statistics.median(len(c) for c in found) if per else None),
        "pss_per_container_mb": round(statistics.mean(per), 2) if per else None,
        "dirty_per_container_mb": round(statistics.mean(per_dirty), 2) if per else None,
        "containers_per_gib": int(1024 / statistics.mean(per)) if per else None,
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- one scenario ----------------------------------------------------------------------


def scenario(name: str, node: str, args: argparse.Namespace, checkout: Path) -> dict[str, Any]:
    kind, code, concurrency = SCENARIOS[name]
    pids: list[int] = []
    environment = dict(item.split("=", 1) for item in args.env)
    with (
        tempfile.TemporaryDirectory(prefix="squall-bench-") as tmp,
        own_server(checkout, pids, env=environment, workdir=Path(tmp)) as (apihost, auth),
    ):
        pid = pids[0]
        uuid, _, key = auth.partition(":")
        action = f"noop-{name}"
        with httpx.Client(
            base_url=f"{apihost}/api/v1/namespaces/_", auth=(uuid, key), trust_env=False
        ) as c:
            body = {"exec": {"kind": kind, "code": code}, "limits": {"concurrency": concurrency}}
            c.put(f"/actions/{action}", json=body).raise_for_status()
            r = c.post(f"/actions/{action}", params={"blocking": "true", "result": "true"})
            if r.status_code != 200 or r.json() != {}:
                raise SystemExit(f"{action} does not work: {r.status_code} {r.text}")
        request = {
            "url": f"{apihost}/api/v1/namespaces/_/actions/{action}?blocking=true&result=true",
            "method": "POST",
            "auth": auth,
            "body": "{}",
        }
        before = loadavg()
        stream = load(node, {**request, "connections": 1, "requests": args.requests})
        after_stream = platform(apihost, pid)
        burst = load(
            node,
            {**request, "connections": args.connections, "durationMs": int(args.duration * 1000)},
        )
        if burst["errors"]:  # keep the server's account of them
            log = (Path(tmp) / "server.log").read_text(errors="replace")
            args.out.with_name(f"{args.out.stem}-{name}-server.log").write_text(log)
        time.sleep(1.0)  # the last runs' logs and records settle
        figures = platform(apihost, pid)
        goal = 4 * args.peer_pss_mb + 2 * figures["warm_containers"]
        return {
            "kind": kind,
            "concurrency": concurrency,
            "loadavg_before": before,
            "loadavg_after": loadavg(),
            "stream": {
                "p50_ms": stream["latencyMs"]["p50"],
                "p99_ms": stream["latencyMs"]["p99"],
                "errors": stream["errors"],
            },
            "burst": {
                "rps": round(burst["rps"], 1),
                "p50_ms": burst["latencyMs"]["p50"],
                "p99_ms": burst["latencyMs"]["p99"],
                "errors": burst["errors"],
                "statuses": burst["statuses"],
            },
            "after_stream": after_stream,
            "after_burst": figures,
            "environment": environment,
            "goal_pss_mb": goal,
            "meets_goal": figures["pss_mb"] <= goal,
        }


def table(results: dict[str, Any], peer: float) -> str:
    head = (
        f"{'scenario':<19}{'p50 c=1':>8}{'req/s':>8}{'err':>5}{'procs':>7}{'PSS MB':>8}"
        f"{'warm':>6}{'stem':>6}{'proc/c':>7}{'MB/c':>7}{'dirty/c':>8}{'c/GiB':>7}{'goal MB':>9}"
        "  load"
    )
    rows = [head]
    for name, r in results.items():
        f = r["after_burst"]
        per = f["pss_per_container_mb"]
        rows.append(
            f"{name:<19}{r['stream']['p50_ms']:>8.2f}{r['burst']['rps']:>8.0f}"
            f"{r['burst']['errors']:>5}{f['processes']:>7}{f['pss_mb']:>8.0f}"
            f"{f['warm_containers']:>6}{f['stem_cells']:>6}"
            f"{f['processes_per_container'] or '-':>7}{per if per is not None else '-':>7}"
            f"{f.get('dirty_per_container_mb') or '-':>8}"
            f"{f['containers_per_gib'] or '-':>7}"
            f"{r['goal_pss_mb']:>6.0f} {'ok' if r['meets_goal'] else 'NO'}"
            f"  {r['loadavg_before'][0]}→{r['loadavg_after'][0]}"
        )
    rows.append(f"goal: platform PSS <= 4 x {peer:g} MB + 2 MB per warm container")
    return "\n".join(rows)


def breakdown(results: dict[str, Any]) -> str:
    """Per scenario: processes and PSS by role, and the server's PSS by mapping."""
    rows = []
    for name, r in results.items():
        f = r["after_burst"]
        roles_ = ", ".join(
            f"{role} {v['pss_mb']:g} ({v['processes']:g}, dirty {v.get('dirty_mb', 0):g})"
            for role, v in f["by_role"].items()
        )
        server = ", ".join(f"{k} {v:g}" for k, v in f["server_by_mapping"].items() if v >= 0.1)
        rows += [f"{name}: MiB (processes) by role: {roles_}", f"  server by mapping: {server}"]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of c=N load")
    parser.add_argument("--requests", type=int, default=500, help="warm stream at c=1")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--peer-pss-mb", type=float, default=38.0, help="best Python peer")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout whose squall runs each scenario first (e.g. a `git archive` of "
        "the commit before a change), for before/after figures in one run",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="added to every server's environment (e.g. SQUALL_WARM_WAIT_MS=50)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --baseline: both trees this many times, taking turns (the order swapped "
        "each round), for figures on a machine whose load moves",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for bench/load.js")
    started = time.time()
    results = {}
    for number in range(args.rounds):
        suffix = f" r{number + 1}" if args.rounds > 1 else ""
        for name in args.only.split(","):
            trees = [(f"{name}{suffix}", REPO)]
            if args.baseline is not None:
                trees.insert(0, (f"{name} (base){suffix}", args.baseline.resolve()))
            for label, tree in trees if number % 2 == 0 else trees[::-1]:
                results[label] = scenario(name, node, args, tree)
    report = {**report_head("memory_at_concurrency", started, "started", node), "results": results}
    report["loadavg_end"] = loadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(results, args.peer_pss_mb))
    print(breakdown(results))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
