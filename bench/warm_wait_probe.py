"""Why a c=50 burst of a no-op starts the containers it starts (issue 12, part 4), seen
from inside the invoker's pool.

    .venv/bin/python bench/warm_wait_probe.py [--kind nodejs:20] [--rounds 2]
        [--duration 5] [--other /tmp/base] [--env KEY=VALUE]

The standalone server runs under this file's ``--serve`` wrapper, which records inside
the server process, for the burst only:

- every WARM WAIT decision (``KeyGroup.may_wait``: waiting runs, slots, the run time the
  rule divides the window by, and its answer) and every stale give-up
  (``KeyGroup._give_up``: a start, or another window because one is starting);
- every cold start the pool hands out, classified by what caused it: ``queue`` (the rule
  said the queue would outlast the window), ``stale`` (the run waited, then gave up
  after a whole window), ``none`` (no run time known yet, or no container of the key);
- every run's hold (hand-out to release, as the pool learns it) and its ``/run``
  exchange (the container's ``run`` call as the invoker's task sees it);
- the event loop thread's busy share (CPU + run-queue wait over wall time, from
  ``/proc/thread-self/schedstat``), sampled every 50 ms.

The driver creates a no-op action, runs it once, sends 500 warm invokes on one
connection (c=1 p50), then 50 connections in a closed loop for ``--duration`` s
(``bench/load.js``), and reads the warm containers from ``/metrics``. With ``--other DIR``
(e.g. a ``git archive`` of the commit before a change) both trees run, taking turns,
``--rounds`` times. Prints a table (with the 1-minute load average before and after each
run) and writes ``bench/results/warm_wait_probe.json``. Only loopback is loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EVENTS_ENV = "SQUALL_BENCH_POOL_EVENTS"
SCHEDSTAT = "/proc/thread-self/schedstat"
CODE = {
    "nodejs:20": "function main() { return {}; }",
    "python:3.11": "def main(args):\n    return {}\n",
}


def _serve() -> None:
    """Run ``squall.cli.main`` (the arguments after ``--serve``) with the pool probes."""
    import asyncio

    out = open(os.environ[EVENTS_ENV], "a", buffering=1 << 16)  # noqa: SIM115 - process-long

    def emit(**event: Any) -> None:
        out.write(json.dumps({"t": time.monotonic(), **event}) + "\n")

    sys.path.insert(0, os.getcwd())  # the tree own_server runs in, not this script's
    from squall.invoker import groups, pool

    def thread_ns() -> int:
        with open(SCHEDSTAT, "rb") as f:
            ran, waited, _ = f.read().split(maxsplit=2)
        return int(ran) + int(waited)

    async def sample_loop() -> None:
        at, ns = time.monotonic(), thread_ns()
        while True:
            await asyncio.sleep(0.05)
            now, now_ns = time.monotonic(), thread_ns()
            emit(k="busy", share=(now_ns - ns) / 1e9 / (now - at))
            at, ns = now, now_ns

    group_cls = groups.KeyGroup
    may_wait, give_up = group_cls.may_wait, group_cls._give_up
    cause: dict[int, str] = {}  # id(task) → why its next acquire may start a container

    def probed_may_wait(self: Any, window: float, *rest: Any) -> bool:
        answer: bool = may_wait(self, window, *rest)
        service = self.service_s(*rest) if rest else self.run_s
        emit(k="may", waiting=len(self.waiters), slots=self.slots, run=self.run_s,
             service=service, window=window, answer=answer)  # fmt: skip
        # What a cold start of this task, if one follows, was caused by.
        task = id(asyncio.current_task())
        cause[task] = "none" if self.run_s is None else "stale" if answer else "queue"
        return answer

    def probed_give_up(self: Any, waiter: Any, window: float) -> None:
        starts = not (self.starting or self.stale_starts) and not waiter.future.done()
        emit(k="giveup", starts=starts, patience=self.patience)
        give_up(self, waiter, window)

    # setattr: the probes replace methods of the tree under test, whatever their types.
    setattr(group_cls, "may_wait", probed_may_wait)  # noqa: B010
    setattr(group_cls, "_give_up", probed_give_up)  # noqa: B010

    pool_cls = pool.ContainerPool
    acquire, release, start = pool_cls.acquire, pool_cls.release, pool_cls.start
    probed_kinds: set[type] = set()

    async def probed_acquire(self: Any, *args: Any, **kwargs: Any) -> Any:
        task = id(asyncio.current_task())
        cause.pop(task, None)
        asked = time.monotonic()
        pc, cold = await acquire(self, *args, **kwargs)
        why = cause.pop(task, "none")
        emit(k="acquire", cold=cold, why=why if cold else "", waited=time.monotonic() - asked)
        kind = type(pc.container)
        if kind not in probed_kinds:  # time the exchange of every container of this class
            probed_kinds.add(kind)
            run = kind.run

            async def timed_run(container: Any, *a: Any, **kw: Any) -> Any:
                began = time.monotonic()
                try:
                    return await run(container, *a, **kw)
                finally:
                    emit(k="exchange", s=time.monotonic() - began)

            setattr(kind, "run", timed_run)  # noqa: B010
        return pc, cold

    def probed_release(self: Any, pc: Any, **kwargs: Any) -> None:
        starts = list(pc._run_starts)
        if starts and not kwargs.get("destroy"):
            emit(k="hold", s=time.monotonic() - starts[0])
        release(self, pc, **kwargs)

    def probed_start(self: Any) -> None:
        start(self)
        self._probe_sampler = asyncio.get_running_loop().create_task(sample_loop())

    setattr(pool_cls, "acquire", probed_acquire)  # noqa: B010
    setattr(pool_cls, "release", probed_release)  # noqa: B010
    setattr(pool_cls, "start", probed_start)  # noqa: B010
    sys.argv = ["squall", *sys.argv[sys.argv.index("--serve") + 1 :]]
    runpy.run_module("squall.cli.main", run_name="__main__", alter_sys=True)


def _quantiles_ms(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [round(v * 1e3, 2) for v in values]
    cuts = statistics.quantiles(values, n=10)
    return [round(v * 1e3, 2) for v in (min(values), cuts[0], cuts[4], cuts[8], max(values))]


def summarize(events: list[dict[str, Any]]) -> dict[str, Any]:
    def of(kind: str) -> list[dict[str, Any]]:
        return [e for e in events if e["k"] == kind]

    colds = [e for e in of("acquire") if e["cold"]]
    by_cause = {why: sum(e["why"] == why for e in colds) for why in ("queue", "stale", "none")}
    decisions = of("may")
    services = [e["service"] for e in decisions if e["service"] is not None]
    return {
        "cold_starts": len(colds),
        "cold_starts_by_cause": by_cause,
        "stale_give_ups": len(of("giveup")),
        "hold_ms_min_p10_p50_p90_max": _quantiles_ms([e["s"] for e in of("hold")]),
        "exchange_ms_min_p10_p50_p90_max": _quantiles_ms([e["s"] for e in of("exchange")]),
        "service_ms_min_p10_p50_p90_max": _quantiles_ms(services),
        "wait_ms_min_p10_p50_p90_max": _quantiles_ms(
            [e["waited"] for e in of("acquire") if not e["cold"]]
        ),
        "decisions": len(decisions),
        "decisions_no": sum(not e["answer"] for e in decisions),
        "loop_busy_p50": round(statistics.median(e["share"] for e in of("busy")), 3)
        if of("busy")
        else None,
    }


def measure(source: Path, args: argparse.Namespace, node: str) -> dict[str, Any]:
    import httpx
    import invoke_latency as il

    environment = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="squall-poolprobe-") as tmp:
        events = Path(tmp) / "events.jsonl"
        probe = [sys.executable, str(Path(__file__).resolve()), "--serve"]
        env = {EVENTS_ENV: str(events), **environment}
        with il.own_server(source, launcher=probe, env=env, workdir=Path(tmp)) as (api, auth):
            uuid, _, key = auth.partition(":")
            base = f"{api}/api/v1/namespaces/_"
            with httpx.Client(base_url=base, auth=(uuid, key), trust_env=False) as c:
                body = {"exec": {"kind": args.kind, "code": CODE[args.kind]}}
                c.put("/actions/noop", json=body).raise_for_status()
                c.post("/actions/noop", params={"blocking": "true"}).raise_for_status()
            request = {
                "url": f"{base}/actions/noop?blocking=true&result=true",
                "method": "POST",
                "auth": auth,
                "body": "{}",
            }
            load_before = os.getloadavg()[0]
            stream = il.load(node, {**request, "connections": 1, "requests": 500})
            began = time.monotonic()
            burst = il.load(
                node, {**request, "connections": 50, "durationMs": int(args.duration * 1e3)}
            )
            ended = time.monotonic()
            load_after = os.getloadavg()[0]
            text = httpx.get(f"{api}/metrics", trust_env=False).text
        window = [json.loads(line) for line in events.read_text().splitlines()]
    warm = 0
    for line in text.splitlines():
        ours = line.startswith("squall_invoker_containers{") and f'kind="{args.kind}"' in line
        if ours and any(f'state="{s}"' in line for s in ("ready", "busy", "paused")):
            warm += int(float(line.rsplit(" ", 1)[1]))
    return {
        "load_before": round(load_before, 2),
        "load_after": round(load_after, 2),
        "c1_p50_ms": stream["latencyMs"]["p50"],
        "c50_rps": round(burst["rps"], 1),
        "c50_p99_ms": burst["latencyMs"]["p99"],
        "errors": burst["errors"],
        "warm_after": warm,
        **summarize([e for e in window if began <= e["t"] <= ended]),
    }


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    head = (
        f"{'tree':<10}{'load':>12}{'c1 p50':>8}{'c50/s':>7}{'warm':>6}{'colds q/s/n':>13}"
        f"{'hold p50':>9}{'exch p50':>9}{'svc p50':>8}{'busy':>6}"
    )
    out = [head]
    for name, r in rows:
        causes = r["cold_starts_by_cause"]
        service = r["service_ms_min_p10_p50_p90_max"]
        out.append(
            f"{name:<10}{r['load_before']:>6}→{r['load_after']:<5}{r['c1_p50_ms']:>8.2f}"
            f"{r['c50_rps']:>7.0f}{r['warm_after']:>6}"
            f"{'/'.join(str(causes[c]) for c in ('queue', 'stale', 'none')):>13}"
            f"{r['hold_ms_min_p10_p50_p90_max'][2]:>9}"
            f"{r['exchange_ms_min_p10_p50_p90_max'][2]:>9}"
            f"{service[2] if service else '-':>8}{r['loop_busy_p50'] or '-':>6}"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="nodejs:20", choices=sorted(CODE))
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--other", type=Path, help="a second tree, measured in turns")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "warm_wait_probe.json"
    )
    args = parser.parse_args()
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for bench/load.js")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from invoke_latency import REPO

    trees = [("this", REPO)] + ([("other", args.other.resolve())] if args.other else [])
    rows = []
    for number in range(args.rounds):
        for name, source in trees if number % 2 == 0 else trees[::-1]:
            rows.append((f"{name} {number + 1}", measure(source, args, node)))
            print(table(rows[-1:]).splitlines()[1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"kind": args.kind, "runs": dict(rows)}, indent=2))
    print(table(rows))
    print(f"written to {args.out}")


if __name__ == "__main__":
    if "--serve" in sys.argv:
        _serve()
    else:
        main()
