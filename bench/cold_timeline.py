"""A cold start over the API as a timeline: when each step of the cold request begins and
ends, next to a warm request's and an idle one's (``cold_api.py``'s server and samples).

    .venv/bin/python bench/cold_timeline.py [--samples 15] [--before /tmp/base-TREE] [--where-taken]

``cold_api.py`` sums each function's time; this marks every edge with its moment
(``time.perf_counter_ns``, CLOCK_MONOTONIC, in the server's process) and prints, per
event, its median offset from the request's arrival at the invoke route — so the gaps
between the steps (a task waiting for the loop, the runtime's own time between the
invoker's write and the answer, background work) show where no function is timed. More
points than ``cold_api.py``'s wrappers: the bus hand-over to the invoker (its intake and
its task's start), the runtime's request exchanges and log output (each chunk of the
runtime's stdout or stderr as it reaches the invoker: the sentinels are written just
before an answer), the completion handed to the controller's waiters, and the zygote's
background forks (a spare's refill). Each sample is B2's (a fresh 128 MB Python action,
0.4 s of quiet, its cold invoke, 5 warm ones) and a sixth after 0.4 s of quiet (``idle``).
The client's RTT minus the route's span is printed as ``outside the route`` (HTTP
parsing, the socket hops). With ``--where-taken`` it counts the cold starts whose
runtime was, when ``/init`` was written, still on the invoker's CPU (queued behind it:
``take: runtime on the invoker's CPU``) and those where it had done its take work by then
(> 0.05 ms of its CPU since the hand-over returned: ``take: its take work done``); its
reads of ``/proc`` lengthen the cold path by ≈ 0.1-0.2 ms, in every tree. The
server process's CPU over each timed request (every
thread's ``/proc/PID/task/*/schedstat``, read by the client just before the request and
just after its answer) is printed as ``server CPU``: a count that load does not stretch
as it does the wall times (background work of the server that falls in the window, a
spare's refill say, is counted too). ``--before TREE`` runs a server of another tree in turn.
Writes ``bench/results/cold_timeline.json``.
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

from b2common import QUIET_S, Api, create, standalone, timed_invoke, warm_up  # noqa: E402
from cold_api import LAUNCHER  # noqa: E402
from invoke_latency import REPO, report_head  # noqa: E402

RESULTS = HERE / "results" / "cold_timeline.json"
WARM = 5

#: Points added to cold_api's wrappers (each edge marked, ``>`` begins, ``<`` ends).
EXTRA = r"""
import squall.controller.waiters as waiters
import squall.invoker.intake as intake
import squall.sandbox.forkedruntime as forkedruntime
import squall.sandbox.zygoteprocess as zygoteprocess
wrap(intake.Intake, "_on_delivery", "intake: delivery")
wrap(intake.Intake, "_take", "intake: task")
wrap(waiters.CompletionWaiters, "deliver", "waiters: completion")
# A request's exchange with the runtime: ``post`` since hotcpu's connection rewrite.
wrap(http.UnixHttpClient, "_exchange" if hasattr(http.UnixHttpClient, "_exchange") else "post",
     "runtime: exchange")
wrap(forkedruntime._Pipe, "data_received", "runtime: output")
import squall.sandbox.logs as logs
wrap(logs.LogCollector, "feed", "runtime: log chunk")
wrap(pool.ContainerPool, "_refill_soon", "pool: refill soon")
wrap(zygoteprocess.ZygoteProcess, "fork", "zygote: fork (refill)")
wrap(pool.ContainerPool, "initialized", "pool: initialized")
if hasattr(http, "Pipeline"):  # /init and the first /run written together (branch pyzyg)
    wrap(http.UnixHttpClient, "pipeline", "runtime: pipeline written")
    wrap(http.Pipeline, "next", "runtime: pipelined answer")
# --where-taken: where the taken spare's runtime is when /init is written (branch
# zygwake): still queued on the invoker's CPU, and whether its take work was done
# (> 0.05 ms of its CPU since the hand-over returned). Each a mark only when true:
# counted per cold start. Its /proc reads (~0.1-0.2 ms) lengthen the path it times.
TAKEN = []
def _state(pid):
    cpu_ns = int(open(f"/proc/{pid}/schedstat").read().split()[0])
    on = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[36])
    here = int(open("/proc/thread-self/stat").read().rsplit(")", 1)[1].split()[36])
    return cpu_ns, on == here
_hand_over = zygote.Zygote._hand_over
async def _handed_over(self, *a, **k):
    spare = await _hand_over(self, *a, **k)
    TAKEN[:] = [spare.pid, _state(spare.pid)[0]]
    return spare
_pipeline = http.UnixHttpClient.pipeline
def _pipelined(self, *a, **k):
    if TAKEN:
        pid, before = TAKEN
        TAKEN.clear()
        try:
            cpu_ns, on_ours = _state(pid)
        except OSError:
            cpu_ns, on_ours = before, False
        if on_ours:
            mark("take: runtime on the invoker's CPU at the /init write")
        if cpu_ns - before > 50_000:
            mark("take: its take work done by the /init write")
    return _pipeline(self, *a, **k)
if os.environ.get("SQUALL_BENCH_WHERE_TAKEN"):
    zygote.Zygote._hand_over = _handed_over
    http.UnixHttpClient.pipeline = _pipelined
"""
#: The marks of a taken spare's runtime at the /init write (EXTRA), counted per cold start.
TAKE_MARKS = (
    "take: runtime on the invoker's CPU at the /init write",
    "take: its take work done by the /init write",
)
MARKER = "from squall.cli.main import main"


def cpu_ns(pid: int) -> int:
    """ns on a CPU of every live thread of ``pid`` (a thread that ends meanwhile is left out)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def timed_cpu(api: Api, pid: int, name: str) -> tuple[float, float]:
    """A blocking invoke of ``name``: (RTT ms, the server's CPU ms over it)."""
    before = cpu_ns(pid)
    rtt, record = timed_invoke(api, name)
    used = (cpu_ns(pid) - before) / 1e6
    if record["response"]["status"] != "success":
        raise SystemExit(f"{name}: {record['response']}")
    return rtt, used


@contextlib.contextmanager
def server(tree: Path, where_taken: bool = False) -> Iterator[tuple[Api, Path, int]]:
    """A timed ``squall standalone`` of ``tree``: (client, events file, pid)."""
    events = Path(tempfile.mkstemp(prefix="cold_timeline-", suffix=".json")[1])
    launcher = LAUNCHER.replace(MARKER, EXTRA + MARKER, 1)
    extra = {"SQUALL_BENCH_EVENTS": str(events)}
    if where_taken:
        extra["SQUALL_BENCH_WHERE_TAKEN"] = "1"
    with standalone(extra, tree, ["-c", launcher]) as running:
        api = Api(running.apihost, running.auth)
        try:
            yield api, events, running.pid
        finally:
            api.close()


def timeline(events: list[tuple[int, str, int]]) -> dict[int, dict[str, list[float]]]:
    """Per request number: event label (``name>`` or ``name<``) -> its moments (ms after
    the request's first event, the route's start)."""
    out: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    origin: dict[int, int] = {}
    for request, label, t in events:
        origin.setdefault(request, t)
        out[request][label].append((t - origin[request]) / 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--before", type=Path, help="also a server of this tree, in turn")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--where-taken",
        action="store_true",
        help="count where a taken spare's runtime is at the /init write (lengthens the path)",
    )
    parser.add_argument("--family", choices=("python", "nodejs"), default="python")
    parser.add_argument(
        "--memory", type=int, default=128, help="MB: 256 takes a stem cell, 128 none"
    )
    args = parser.parse_args()
    trees = {"after": REPO, **({"before": args.before.resolve()} if args.before else {})}
    started = time.time()

    def name(i: int) -> str:
        return f"{args.family}-{args.memory}-{i}"

    load_before = float(Path("/proc/loadavg").read_text().split()[0])
    numbers: dict[str, dict[str, list[int]]] = {t: defaultdict(list) for t in trees}
    rtts: dict[str, dict[str, list[float]]] = {t: defaultdict(list) for t in trees}
    cpus: dict[str, dict[str, list[float]]] = {t: defaultdict(list) for t in trees}
    pids: dict[str, int] = {}
    counters = dict.fromkeys(trees, 0)
    files: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        apis = {}
        for tree, path in trees.items():
            opened = server(path, args.where_taken)
            apis[tree], files[tree], pids[tree] = stack.enter_context(opened)
        for tree in trees:
            counters[tree] += warm_up(apis[tree], (args.memory,))
        for i in range(args.samples):
            for tree in trees:
                # B2's sample (b2common.cold_sample), each request's server CPU counted.
                api, pid = apis[tree], pids[tree]
                create(api, name(i), args.family, args.memory)
                time.sleep(QUIET_S)
                cold = timed_cpu(api, pid, name(i))
                warms = [timed_cpu(api, pid, name(i)) for _ in range(WARM)]
                n = numbers[tree]
                n["cold"].append(counters[tree] + 1)
                n["warm"].append(counters[tree] + 1 + WARM)  # the last warm one
                counters[tree] += 1 + WARM
                time.sleep(QUIET_S)
                idle = timed_cpu(api, pid, name(i))
                counters[tree] += 1
                n["idle"].append(counters[tree])
                for kind, (rtt_ms, cpu_ms) in (("cold", cold), ("warm", warms[-1]), ("idle", idle)):
                    rtts[tree][kind].append(rtt_ms)
                    cpus[tree][kind].append(cpu_ms)
    load_after = float(Path("/proc/loadavg").read_text().split()[0])
    results: dict[str, Any] = {}
    print(f"1-minute load average: {load_before} before, {load_after} after; "
          f"{args.samples} samples per tree")  # fmt: skip
    for tree in trees:
        per_request = timeline(json.loads(files[tree].read_text()))
        files[tree].unlink()
        table: dict[str, dict[str, float]] = {}
        for kind in ("cold", "warm", "idle"):
            labels = {k for n in numbers[tree][kind] for k in per_request[n]}
            for label in labels:
                firsts = [
                    per_request[n][label][0] for n in numbers[tree][kind] if label in per_request[n]
                ]
                table.setdefault(label, {})[kind] = round(statistics.median(firsts), 3)
                table[label][kind + " #"] = statistics.median(
                    [len(per_request[n].get(label, [])) for n in numbers[tree][kind]]
                )
        rtt = {k: round(statistics.median(v), 3) for k, v in rtts[tree].items()}
        cpu = {k: round(statistics.median(v), 3) for k, v in cpus[tree].items()}
        results[tree] = {"rtt": rtt, "server cpu": cpu, "events": table}
        print(
            f"\n{tree}: RTT p50 cold {rtt['cold']}, warm {rtt['warm']}, idle {rtt['idle']} ms; "
            f"server CPU p50 cold {cpu['cold']}, warm {cpu['warm']}, idle {cpu['idle']} ms"
        )
        head = "event (first, ms after the route began; p50)"
        print(f"  {head:46} {'cold':>8} {'warm':>8} {'idle':>8}  count c/w/i")
        order = sorted(table, key=lambda k: table[k].get("cold", table[k].get("warm", 1e9)))
        for label in order:
            row = table[label]
            cells = " ".join(
                f"{row[k]:8.3f}" if k in row else f"{'-':>8}" for k in ("cold", "warm", "idle")
            )
            counts = "/".join(f"{row.get(k + ' #', 0):g}" for k in ("cold", "warm", "idle"))
            print(f"  {label:46} {cells}  {counts}")
        for label in TAKE_MARKS:
            marked = sum(label in per_request[n] for n in numbers[tree]["cold"])
            print(f"  {label}: {marked} of {len(numbers[tree]['cold'])} cold starts")
        for kind in ("cold", "warm", "idle"):
            route = [
                per_request[n]["route<"][0]
                for n in numbers[tree][kind]
                if "route<" in per_request[n]
            ]
            outside = statistics.median(rtts[tree][kind]) - statistics.median(route)
            print(f"  outside the route ({kind}): {outside:.3f} ms")  # fmt: skip
    report = {
        **report_head("cold_timeline", started, "started", None),
        "parameters": {"samples": args.samples, "trees": {k: str(v) for k, v in trees.items()}},
        "load_average_1min": {"before": load_before, "after": load_after},
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
