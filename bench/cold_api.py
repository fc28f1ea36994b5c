"""Where a cold start over the API goes: B2's samples, with the server's phases timed.

    .venv/bin/python bench/cold_api.py [--samples 20] [--before /tmp/base-coldapi]

Runs ``squall standalone`` (isolation on, throttles out of the way, the default stem
cells and the Python zygote) with timing wrappers around the functions a blocking
invoke passes through (``time.perf_counter_ns`` in the server's process; the wrappers
cost a few µs each, alike for every request): the invoke route, the controller's action
lookup, the activator, the invoker's activation, its action read, the container pool's
acquire, the factory's create, the zygote's take (cgroup limits, hand-over), the pid
file, the started point (``ActivationStore.start``), ``/init``, ``/run``, the logs, the
record and completion. Each sample is B2's (``invoker_bench.py``): a fresh no-op action,
0.4 s of quiet, its first (cold) invoke, then 5 warm invokes at once; and a control that
B2 does not take: 0.4 s of quiet again and one more warm invoke (``idle``), which pays
whatever any first request after a quiet moment pays, cold or not.

Tiers: ``python zygote`` (128 MB Python action: a started zygote spare taken),
``nodejs stem cell`` (256 MB Node.js action: a stem cell taken, /init only) and ``python
true cold`` (the 128 MB Python action again, on servers started with ``--no-zygote``:
their factory has no zygote, so it starts through bubblewrap; the ``bwrap:`` phases are
its start, the supervisor's spawn, the pid and cgroup check, the wait for the ready byte).
``--before TREE`` runs a second server of another tree (e.g. a ``git archive`` of main)
and the two take turns sample by sample, so load changes hit both alike.

Prints per tier and tree: client RTTs (cold, warm p50, idle; B2's cold - warm and
cold - idle) and each phase's median over the samples for cold, warm and idle requests;
``factory: create #`` and ``pid file #`` count how many began while the request ran
(background work included: a stem cell's replacement started meanwhile is one more
create). The 1-minute load average is recorded before and after. Writes
``bench/results/cold_api.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from b2common import QUIET_S, Api, annotation, cold_sample, standalone, timed_invoke, warm_up  # noqa: E402
from invoke_latency import REPO, report_head  # noqa: E402

RESULTS = HERE / "results" / "cold_api.json"
TIERS = {
    "python zygote": ("python", 128),
    "nodejs stem cell": ("nodejs", 256),
    "python true cold": ("python", 128),
}
WARM = 5
#: Phases whose count per request is printed (the rest are in the JSON only).
COUNTED = ("factory: create", "pid file")

#: The server's entry point: wrappers that append (request number, label, ns) to a list
#: dumped at exit. A request's number is taken when the invoke route starts (requests
#: are sequential here). ``>`` opens a span, ``<`` closes it.
LAUNCHER = r"""
import atexit, functools, json, os, sys, time
EVENTS, REQUEST = [], [0]
def mark(label):
    EVENTS.append((REQUEST[0], label, time.perf_counter_ns()))
def wrap(owner, name, label, first=False):
    original = getattr(owner, name, None)
    if original is None:  # renamed: every span of it would silently be missing
        raise SystemExit(f"cold_api: nothing to time at {owner.__name__}.{name}")
    if hasattr(original, "__code__") and original.__code__.co_flags & 0x80:  # coroutine
        @functools.wraps(original)
        async def timed(*a, **k):
            if first:
                REQUEST[0] += 1
            mark(label + ">")
            try:
                return await original(*a, **k)
            finally:
                mark(label + "<")
    else:
        @functools.wraps(original)
        def timed(*a, **k):
            mark(label + ">")
            try:
                return original(*a, **k)
            finally:
                mark(label + "<")
    setattr(owner, name, timed)
import squall.controller.hotroutes as hotroutes
import squall.controller.routes.actions as actions
import squall.controller.activator as activator
import squall.invoker.activate as activate
import squall.invoker.completion as completion
import squall.invoker.pool as pool
import squall.sandbox.process as process
import squall.sandbox.zygote as zygote
import squall.sandbox.container as container
import squall.sandbox.launch as launch
import squall.sandbox.http as http
import squall.store.sqlite_activations as sqlite_activations
wrap(hotroutes, "_invoke", "route", first=True)
wrap(actions, "resolve_action", "controller: action lookup")
wrap(activator.Activator, "invoke", "activator")
wrap(activate.Activating, "_handle", "invoker")
wrap(activate.Activating, "_action", "invoker: action read")
wrap(activate.Activating, "_start", "invoker: started point")
wrap(activate.Activating, "_logs", "invoker: logs")
wrap(completion.Completing, "_finish", "invoker: record + completion")
wrap(pool.ContainerPool, "acquire", "pool: acquire")
wrap(process.ProcessContainerFactory, "create", "factory: create")
wrap(zygote.Zygote, "take", "zygote: take")
wrap(zygote.Zygote, "_hand_over", "zygote: hand over")
import squall.sandbox.spare as spare
wrap(spare.Spare, "fit", "zygote: cgroup limits")  # Zygote._limit until branch cold
wrap(launch, "write_pid_file", "pid file")
wrap(container.ProcessContainer, "initialize", "container: /init")
wrap(container.ProcessContainer, "run", "container: /run")
if hasattr(container.ProcessContainer, "initialize_and_run"):  # branch pyzyg
    wrap(container.ProcessContainer, "initialize_and_run", "container: /init + /run")
wrap(http.UnixHttpClient, "_connect", "runtime: connect")
wrap(sqlite_activations.SqliteActivationStore, "start", "store: start")
import squall.sandbox.sandboxstart as sandboxstart
import squall.sandbox.supervisor as supervisor
wrap(sandboxstart.SandboxStarts, "_start", "bwrap: start")
wrap(supervisor.Supervisor, "spawn", "bwrap: spawn")
wrap(sandboxstart, "confine", "bwrap: confine")
wrap(launch, "wait_ready", "bwrap: wait ready")
if os.environ.get("SQUALL_BENCH_NO_ZYGOTE"):  # --no-zygote: Python starts through bwrap
    import squall.sandbox.factory as factory
    factory.ProcessContainerFactory = functools.partial(
        factory.ProcessContainerFactory, zygote=False
    )
def dump():
    with open(os.environ["SQUALL_BENCH_EVENTS"], "w") as f:
        json.dump(EVENTS, f)
atexit.register(dump)
from squall.cli.main import main
sys.argv[0] = "squall"
main()
"""


@contextlib.contextmanager
def server(tree: Path, zygote: bool = True) -> Iterator[tuple[Api, Path]]:
    """A timed ``squall standalone`` of ``tree``: (client, events file: written when the
    server exits, left for the caller to read and remove); without ``zygote``, its
    factory has none (a Python action's cold start goes through bubblewrap)."""
    events = Path(tempfile.mkstemp(prefix="cold_api-", suffix=".json")[1])
    extra = {"SQUALL_BENCH_EVENTS": str(events)}
    if not zygote:
        extra["SQUALL_BENCH_NO_ZYGOTE"] = "1"
    with standalone(extra, tree, ["-c", LAUNCHER]) as running:
        api = Api(running.apihost, running.auth)
        try:
            yield api, events
        finally:
            api.close()


def spans(events: list[tuple[int, str, int]]) -> dict[int, dict[str, float]]:
    """Per request number: label -> ms spent inside (summed over its spans), and
    ``label + " #"`` -> how many spans of it began (background work counts too: a stem
    cell's replacement started while the request runs shows as a second create)."""
    out: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    opened: dict[tuple[int, str], int] = {}
    for request, label, t in events:
        name, edge = label[:-1], label[-1]
        if edge == ">":
            opened[(request, name)] = t
            out[request][name + " #"] += 1
        elif (request, name) in opened:
            out[request][name] += (t - opened.pop((request, name))) / 1e6
    return out


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20, help="samples per tier and tree")
    parser.add_argument("--before", type=Path, help="also a server of this tree, in turn")
    parser.add_argument("--tiers", default=",".join(TIERS), help="comma-separated")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-zygote", action="store_true", help="servers without the Python zygote"
    )
    args = parser.parse_args()
    tiers = [t.strip() for t in args.tiers.split(",")]
    trees = {"after": REPO, **({"before": args.before.resolve()} if args.before else {})}
    started = time.time()
    load_before = float(Path("/proc/loadavg").read_text().split()[0])
    # Per tree: the request numbers of each sample's cold, warm and idle invokes.
    numbers: dict[str, dict[str, dict[str, list[int]]]] = {
        tree: {t: {"cold": [], "warm": [], "idle": []} for t in tiers} for tree in trees
    }
    rtts: dict[str, dict[str, dict[str, list[float]]]] = {
        tree: {
            t: {"cold": [], "warm": [], "idle": [], "delta": [], "delta idle": [], "initTime": []}
            for t in tiers
        }
        for tree in trees
    }
    counters = dict.fromkeys(trees, 0)
    event_files: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        apis = {}
        for tree, path in trees.items():
            api, events = stack.enter_context(server(path, zygote=not args.no_zygote))
            apis[tree], event_files[tree] = api, events

        def invoke(tree: str, name: str) -> tuple[float, dict[str, Any]]:
            counters[tree] += 1
            return timed_invoke(apis[tree], name)

        for tree in trees:  # warm the HTTP path and start the zygote
            counters[tree] += warm_up(apis[tree], (128,))  # the server numbers invokes
        for i in range(args.samples):
            for tier in tiers:
                for tree in trees:  # the trees take turns, sample by sample
                    family, memory = TIERS[tier]
                    name = f"{family}-{memory}-{i}"
                    sample = cold_sample(apis[tree], name, family, memory, WARM)
                    n = numbers[tree][tier]
                    n["cold"].append(counters[tree] + 1)
                    n["warm"] += range(counters[tree] + 2, counters[tree] + 2 + WARM)
                    counters[tree] += 1 + WARM
                    cold, warms, record = sample.cold, sample.warms, sample.record
                    time.sleep(QUIET_S)
                    idle, _ = invoke(tree, name)
                    n["idle"].append(counters[tree])
                    r = rtts[tree][tier]
                    warm = statistics.median(warms)
                    r["cold"].append(cold)
                    r["warm"].append(warm)
                    r["idle"].append(idle)
                    r["delta"].append(cold - warm)
                    r["delta idle"].append(cold - idle)
                    r["initTime"].append(float(annotation(record, "initTime") or 0))
    load_after = float(Path("/proc/loadavg").read_text().split()[0])
    results: dict[str, Any] = {}
    for tree in trees:
        per_request = spans(json.loads(event_files[tree].read_text()))
        event_files[tree].unlink()
        results[tree] = {}
        for tier in tiers:
            phases: dict[str, dict[str, float]] = {}
            names = sorted({k for n in numbers[tree][tier]["cold"] for k in per_request[n]})
            for label in names:
                requests = numbers[tree][tier]
                phases[label] = {
                    kind: median([per_request[n].get(label, 0.0) for n in requests[kind]])
                    for kind in ("cold", "warm", "idle")
                }
            results[tree][tier] = {
                "rtt": {k: median(v) for k, v in rtts[tree][tier].items()},
                "phases": phases,
            }
    la = {"before": load_before, "after": load_after}
    print(f"1-minute load average: {load_before} before, {load_after} after; "
          f"{args.samples} samples per tier and tree")  # fmt: skip
    for tier in tiers:
        for tree in trees:
            r = results[tree][tier]["rtt"]
            print(f"\n{tier} ({tree}): RTT cold {r['cold']} warm {r['warm']} idle {r['idle']} "
                  f"ms; cold - warm {r['delta']}, cold - idle {r['delta idle']}; "
                  f"initTime {r['initTime']}")  # fmt: skip
            print(f"  {'phase (ms, p50)':34} {'cold':>8} {'warm':>8} {'idle':>8} {'cold-warm':>10}")
            for label, v in results[tree][tier]["phases"].items():
                if label.endswith(" #") and label[:-2] not in COUNTED:
                    continue
                print(f"  {label:34} {v['cold']:8.3f} {v['warm']:8.3f} {v['idle']:8.3f} "
                      f"{v['cold'] - v['warm']:10.3f}")  # fmt: skip
    report = {
        **report_head("cold_api", started, "started", None),
        "parameters": {
            "samples": args.samples,
            "tiers": tiers,
            "trees": {k: str(v) for k, v in trees.items()},
        },
        "load_average_1min": la,
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
