"""Invoker benchmarks B1, B2, B3, B6, B8 of issue 3, through the HTTP API, with goals.

    .venv/bin/python bench/invoker_bench.py [--only b1,b2,b3,b6,b8] [--repeats 3]

Starts its own ``squall standalone`` servers on loopback (temporary homes, throttles and
invoker memory raised out of the way, isolation on) and stops them at the end:

- server A, the defaults: stem cells ``nodejs:20@256x2,python:3.13@256x1`` and the Python
  zygote: B1, B2, B3;
- server C, no stem cells and no zygote (the factory built with ``zygote=False``: there is
  no setting for it): B2's Python true cold tier, running alongside A;
- servers A' and C', as A and C but with ``SQUALL_SANDBOX_NETWORK=none`` (sandboxes,
  stem cells and zygote spares without a network link): B2 again, interleaved with A and
  C, so each tier's cost of the network shows as the difference in the same run;
- server B, no stem cells (zygote on): B6;
- server D, the defaults again: B8 (Node.js stem cells follow bursts: invoker/prewarm.py).

B1  warm blocking no-op invoke, one keep-alive connection (``bench/load.js``): p50/p99,
    median of ``--repeats`` runs; ``GET /api/v1`` (no auth, no store, no invoke) in turn
    as the baseline.
B2  cold start per tier: a fresh no-op action per sample, invoked blocking; its RTT minus
    the p50 of warm RTTs of the same action just after. Stem cell = 256 MB action on A (the
    shape of the default stem cells), Python zygote = 128 MB Python action on A (forked
    from a zygote spare), Node.js true cold = 128 MB Node.js action on A (no cell of that
    shape), Python true cold = 128 MB Python action on C (bubblewrap start). A 0.4 s pause
    before each sample lets the stem cell or spare taken last be replaced; tiers take
    turns. ``initTime`` and ``waitTime`` from the records. Beside B2's figure (not part of
    it): cold - idle, where idle is one more warm invoke after the same 0.4 s of quiet
    (the wake-up every first request after a quiet moment pays, which cold - warm
    counts as cold start). Every tier is measured with the
    default network (egress: a veth link per sandbox, set up ahead for stem cells and
    zygote spares, on the path for true cold starts) and without (``, no network``).
B3  throughput of a warm no-op Node.js action at 1, 4 and 50 connections (``GET /api/v1``
    at the same concurrency as the baseline), and ``--mix`` distinct warm no-op Node.js
    actions in rotation at 50 connections (``bench/load.js`` with ``urls``); median of
    ``--repeats`` runs.
B6  memory per warm container: K distinct 256 MB Python and K Node.js actions warmed,
    then USS and PSS (``/proc/PID/smaps_rollup``) summed over every process of each
    container's memory cgroup; the zygote's cgroup and its spares' are shared overhead,
    spread over the K Python containers; containers per GiB = 1024 / MB per container.
B8  burst: ``--burst`` distinct never-invoked no-op 128 MB actions, blocking invokes
    written together on connections opened beforehand (the records come back with the
    answers: no polling): sandboxes per second over the server's span (first
    acceptance to last end, from the records), and from the client's send; each burst's
    own figure (the first of a server finds 2 spares, later ones the spares grown after
    the one before: ``sandbox/sparedemand.py``; the spares waiting are counted; Node.js
    the same with stem cells: those taken are counted, ``prewarmed``, and each server's
    Node.js stem cells are sampled from ``/metrics`` every 0.2 s: a timeline in the
    JSON, the cells waiting at each burst's start in the table), ``--burst-gap`` s
    (default 2) after each burst, and the server process's CPU per sandbox (its
    threads' ``schedstat``, not its children's: HTTP, controller, invoker, factory,
    records).

``--before TREE`` (a checkout of another version) also starts servers running that tree's
``squall``: B2's tiers of servers A and C and B8's bursts are then measured on both,
taking turns (rows ``(before)``). ``--family`` keeps B2's and B8's figures of one family only.

The 1-minute load average is sampled every 5 s during the run and reported (other work
on the machine disturbs every figure).
Prints a table and writes ``bench/results/invoker_bench.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from b2common import (  # noqa: E402
    CODE,
    QUIET_S,
    Api,
    annotation,
    cold_sample,
    create,
    standalone,
    timed_invoke,
    warm_up,
)
from invoke_latency import (  # noqa: E402
    REPO,
    clean_env,
    load,
    report_head,
)

LOAD_JS = HERE / "load.js"
RESULTS = HERE / "results" / "invoker_bench.json"
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
#: A waiting zygote spare's CPU weight (squall.sandbox.zygoteprocess.SPARE_CPU_SHARES).
SPARE_CPU_SHARES = 2
#: B2's goals, ms of cold RTT - warm RTT (p50).
B2_GOALS = {
    "python zygote": 2.0,
    "python stem cell": 5.0,
    "python true cold": 20.0,
    "nodejs stem cell": 5.0,
    "nodejs true cold": 70.0,
}


#: ``squall`` with the Python zygote turned off, for B2's true cold tier: there is no setting
#: for it, so the factory that ``squall.sandbox.factory`` makes is given ``zygote=False``.
NO_ZYGOTE = (
    "import functools, sys\n"
    "import squall.sandbox.factory as factory\n"
    "factory.ProcessContainerFactory = functools.partial(factory.ProcessContainerFactory,"
    " zygote=False)\n"
    "from squall.cli.main import main\n"
    "sys.argv[0] = 'squall'\n"
    "main()\n"
)


@contextlib.contextmanager
def server(
    extra_env: dict[str, str], zygote: bool = True, tree: Path = REPO
) -> Iterator[tuple[str, str, Path]]:
    """A ``squall standalone`` of our own (``b2common.standalone``): (apihost, auth,
    home); ``zygote=False``: its factory without the Python zygote."""
    with standalone(extra_env, tree, None if zygote else ["-c", NO_ZYGOTE]) as running:
        yield running.apihost, running.auth, running.home


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(pct(values, 50), 3),
        "p99": round(pct(values, 99), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def invoke_url(apihost: str, name: str) -> str:
    return f"{apihost}/api/v1/namespaces/_/actions/{name}?blocking=true&result=true"


# -- B1 / B3 ---------------------------------------------------------------------------


def b1(api: Api, apihost: str, auth: str, node: str, args: argparse.Namespace) -> dict[str, Any]:
    """Warm blocking invokes over one connection, and ``GET /api/v1`` as the baseline."""
    targets: dict[str, dict[str, Any]] = {"baseline": {"url": f"{apihost}/api/v1"}}
    for family in CODE:
        create(api, f"b1-{family}", family)
        targets[family] = {"url": invoke_url(apihost, f"b1-{family}"), "method": "POST",
                           "auth": auth, "body": "{}"}  # fmt: skip
    for req in targets.values():
        load(node, {**req, "connections": 1, "requests": 300})
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    for _ in range(args.repeats):  # targets take turns, so load changes hit all alike
        for target, req in targets.items():
            runs[target].append(load(node, {**req, "connections": 1, "requests": args.requests}))
    out: dict[str, Any] = {}
    for target, rs in runs.items():
        out[target] = digest(rs)
        if target != "baseline":
            out[target]["/base p50"] = round(out[target]["p50"] / out["baseline"]["p50"], 2)
    return out


def load_mix(node: str, options: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([node, str(LOAD_JS), json.dumps(options)], capture_output=True,
                          text=True, check=False, env=clean_env(), timeout=600)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"load.js failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def b3(api: Api, apihost: str, auth: str, node: str, args: argparse.Namespace) -> dict[str, Any]:
    """Throughput of one warm action at 1, 4, 50 connections (``GET /api/v1`` alongside as
    the baseline), then of ``--mix`` distinct warm actions in rotation at 50."""
    ms = int(args.duration * 1000)
    create(api, "b3-nodejs", "nodejs")
    invoke = {"url": invoke_url(apihost, "b3-nodejs"), "method": "POST", "auth": auth,
              "body": "{}"}  # fmt: skip
    baseline = {"url": f"{apihost}/api/v1"}
    load(node, {**invoke, "connections": 50, "durationMs": 2000})  # warm its containers
    out: dict[str, Any] = {}
    for conns in (1, 4, 50):
        runs: dict[str, list[dict[str, Any]]] = {"invoke": [], "baseline": []}
        for _ in range(args.repeats):
            runs["invoke"].append(load(node, {**invoke, "connections": conns, "durationMs": ms}))
            runs["baseline"].append(
                load(node, {**baseline, "connections": conns, "durationMs": ms})
            )
        out[f"{conns} conn"] = digest(runs["invoke"])
        out[f"{conns} conn"]["baseline"] = digest(runs["baseline"])
    names = [f"b3-mix-{i:03d}" for i in range(args.mix)]
    for n in names:
        create(api, n, "nodejs")
    mix = {"urls": [invoke_url(apihost, n) for n in names], "method": "POST", "auth": auth,
           "body": "{}"}  # fmt: skip
    load_mix(node, {**mix, "connections": 50, "durationMs": 4000})  # warm-up: cold starts
    load_mix(node, {**mix, "connections": 50, "durationMs": 2000})
    mixed = [load_mix(node, {**mix, "connections": 50, "durationMs": ms})
             for _ in range(args.repeats)]  # fmt: skip
    out[f"{args.mix} actions, 50 conn"] = digest(mixed)
    return out


def digest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50": statistics.median(r["latencyMs"]["p50"] for r in runs),
        "p99": statistics.median(r["latencyMs"]["p99"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "runs": [{k: r[k] for k in ("rps", "requests", "errors", "latencyMs")} for r in runs],
    }


# -- B2 --------------------------------------------------------------------------------


#: B2's tiers: (family, tier, memory, server). Server "main" keeps the default stem cells
#: (256 MB) and the Python zygote, so a 256 MB action takes a stem cell and a 128 MB Python
#: action is forked from a zygote spare; server "cold" has neither.
TIERS = (
    ("python", "zygote", 128, "main"),
    ("python", "stem cell", 256, "main"),
    ("python", "true cold", 128, "cold"),
    ("nodejs", "stem cell", 256, "main"),
    ("nodejs", "true cold", 128, "main"),
)
#: The same tiers on servers whose sandboxes have no network (``SQUALL_SANDBOX_NETWORK``).
NO_NETWORK = ", no network"


#: ``--before``: the tiers of server "main" also measured on one running another tree.
BEFORE = " (before)"


def b2(apis: dict[str, Api], args: argparse.Namespace) -> dict[str, Any]:
    tiers = [(f, t + net, m, where + net) for f, t, m, where in TIERS for net in ("", NO_NETWORK)]
    if "before" in apis:
        tiers += [(f, t + BEFORE, m, "before") for f, t, m, where in TIERS if where == "main"]
        tiers += [(f, t + BEFORE, m, "cold before") for f, t, m, w in TIERS if w == "cold"]
    if args.family:
        tiers = [tier for tier in tiers if tier[0] == args.family]
    samples: dict[str, dict[str, list[float]]] = {
        f"{f} {t}": {
            "delta": [],
            "delta idle": [],
            "cold": [],
            "warm": [],
            "idle": [],
            "initTime": [],
            "waitTime": [],
        }
        for f, t, _, _ in tiers
    }
    prewarmed = dict.fromkeys(samples, 0)
    # Warm the HTTP path of each server used and start the zygote (on the first fork).
    for api in {apis[where] for _, _, _, where in tiers}:
        warm_up(api)
    for i in range(args.colds):  # tiers take turns, so load changes hit all alike
        for family, tier, memory, where in tiers:
            api = apis[where]
            sample = cold_sample(api, f"b2-{family}-{memory}-{i}", family, memory)
            cold, warm, record = sample.cold, sample.warm, sample.record
            # Not B2's figure: a warm invoke after the same quiet as the cold one's.
            time.sleep(QUIET_S)
            idle, _ = timed_invoke(api, f"b2-{family}-{memory}-{i}")
            s = samples[f"{family} {tier}"]
            s["idle"].append(idle)
            s["delta idle"].append(cold - idle)
            s["cold"].append(cold)
            s["warm"].append(warm)
            s["delta"].append(cold - warm)
            s["initTime"].append(float(annotation(record, "initTime") or 0))
            s["waitTime"].append(float(annotation(record, "waitTime") or 0))
            prewarmed[f"{family} {tier}"] += bool(annotation(record, "prewarmed"))
    # "prewarmed": how many samples took a stem cell (all of a stem cell tier, none else).
    return {
        key: {**{k: summary(v) for k, v in s.items()}, "prewarmed": prewarmed[key]}
        for key, s in samples.items()
    }


# -- B6 --------------------------------------------------------------------------------


def leaf_cgroups() -> dict[str, list[int]]:
    """Every leaf memory cgroup under squall*: path → pids."""
    found = {}
    for top in CGROUP_MEMORY.glob("squall*"):
        for procs in top.rglob("cgroup.procs"):
            d = procs.parent
            if any(p.is_dir() for p in d.iterdir()):
                continue
            pids = [int(x) for x in procs.read_text().split()]
            if pids:
                found[str(d)] = pids
    return found


def smaps(pid: int) -> tuple[float, float]:
    """(USS, PSS) in kB of one process."""
    uss = pss = 0.0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Private_Clean", "Private_Dirty", "Private_Hugetlb"):
                uss += float(rest.split()[0])
            elif key == "Pss":
                pss = float(rest.split()[0])
    return uss, pss


def memory_limit_mb(path: str) -> float:
    return int((Path(path) / "memory.limit_in_bytes").read_text()) / 2**20


def cpu_shares(memory_path: str) -> int | None:
    """The v1 ``cpu.shares`` of the cgroup whose memory controller's directory is given."""
    shares = CGROUP_CPU / Path(memory_path).relative_to(CGROUP_MEMORY) / "cpu.shares"
    return int(shares.read_text()) if shares.exists() else None


def measure_containers(
    groups: dict[str, list[int]], others: dict[str, list[int]]
) -> dict[str, Any]:
    """Mean USS/PSS of the containers' cgroups; ``others`` (the zygote's cgroup and its
    spares') are shared overhead, reported and also spread over the containers."""
    uss, pss, cg, nprocs = [], [], [], []
    detail = []
    for path, pids in groups.items():
        pairs = [smaps(p) for p in pids]
        detail.append({str(p): [command(p), round(u / 1024, 2), round(s / 1024, 2)]
                       for p, (u, s) in zip(pids, pairs, strict=True)})  # fmt: skip
        uss.append(sum(u for u, _ in pairs) / 1024)
        pss.append(sum(p for _, p in pairs) / 1024)
        nprocs.append(len(pids))
        stat = dict(line.split() for line in (Path(path) / "memory.stat").read_text().splitlines())
        cg.append((int(stat["rss"]) + int(stat.get("mapped_file", 0))) / 2**20)
    shared = [smaps(p) for pids in others.values() for p in pids]
    shared_pss = sum(p for _, p in shared) / 1024
    mean = statistics.mean
    with_shared = mean(pss) + shared_pss / len(groups)
    return {
        "containers": len(groups),
        "processes_per_container": statistics.median(nprocs),
        "uss_mb": round(mean(uss), 2),
        "pss_mb": round(mean(pss), 2),
        "cgroup_rss_mb": round(mean(cg), 2),
        "shared_cgroups": sorted(Path(o).name for o in others),
        "shared_pss_mb": round(shared_pss, 2),
        "pss_with_shared_mb": round(with_shared, 2),
        "per_gib_uss": int(1024 / mean(uss)),
        "per_gib_pss": int(1024 / mean(pss)),
        "per_gib_pss_with_shared": int(1024 / with_shared),
        "processes": detail[:2],
    }


def command(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:60]
    return "?"


def b6(api: Api, args: argparse.Namespace) -> dict[str, Any]:
    """``--k`` warm 256 MB containers per kind on a server without stem cells."""
    out: dict[str, Any] = {}
    before = set(leaf_cgroups())
    for family in ("python", "nodejs"):
        for i in range(args.k):
            create(api, f"b6-{family}-{i}", family)
            api.ok("POST", f"/actions/b6-{family}-{i}", {}, blocking="true", result="true")
        time.sleep(1.0)  # let the runtimes settle after their first run
        now = leaf_cgroups()
        new = {p: pids for p, pids in now.items() if p not in before}
        # An action's container has the action's memory as its limit; the zygote (1 GiB)
        # does not, and its spares (limits written ahead for the size they expect) have
        # the least CPU weight until taken (a 256 MB container's is 4 at this server's
        # SQUALL_USER_MEMORY_MB).
        mine = {
            p: pids
            for p, pids in new.items()
            if memory_limit_mb(p) == 256 and cpu_shares(p) != SPARE_CPU_SHARES
        }
        others = {p: pids for p, pids in new.items() if p not in mine}
        out[family] = measure_containers(mine, others)
        before = set(now)
    return out


# -- B8 --------------------------------------------------------------------------------


async def _blocking_invoke(
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> tuple[int, dict[str, Any]]:
    """Read one HTTP/1.1 answer (Content-Length framed) from a connection: (status, JSON)."""
    reader, _ = streams
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (h.partition(":") for h in lines[1:])
                  if k.lower() == "content-length")  # fmt: skip
    body: dict[str, Any] = json.loads(await reader.readexactly(length))
    return int(lines[0].split()[1]), body


async def _stored_record(host: str, port: int, token: str, aid: str) -> dict[str, Any]:
    """The record of activation ``aid`` once stored (polled every 0.5 s, for 5 minutes)."""
    request = (f"GET /api/v1/namespaces/_/activations/{aid} HTTP/1.1\r\nHost: {host}\r\n"
               f"Authorization: Basic {token}\r\n\r\n").encode()  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        streams = await asyncio.open_connection(host, port)
        streams[1].write(request)
        status, body = await _blocking_invoke(streams)
        streams[1].close()
        if status == 200 and "response" in body:
            return body
        await asyncio.sleep(0.5)
    raise SystemExit(f"B8: activation {aid} has no record after 5 minutes")


def server_pid(apihost: str) -> int | None:
    """The pid of the ``squall standalone`` listening at ``apihost`` (by its command line)."""
    port = apihost.rsplit(":", 1)[1]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if b"standalone" in argv and port.encode() in argv:
                return int(entry)
    return None


def spares_waiting(pid: int | None) -> int | None:
    """How many started Python spares wait in the server's containers directory (their
    sockets in ``<home>/containers/spares``; the server's ``--home`` from its command line)."""
    if pid is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        spares = Path(argv[argv.index("--home") + 1]) / "containers" / "spares"
        return len(list(spares.iterdir())) if spares.exists() else 0
    return None


def process_cpu_ns(pid: int | None) -> int:
    """CPU time so far of every thread of ``pid`` (not of its children), ``schedstat``."""
    total = 0
    if pid is not None:
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
    return total


async def burst(apihost: str, auth: str, names: list[str]) -> dict[str, Any]:
    """Blocking invokes of every action at once; the full records come with the answers.

    Every connection is opened and every request built first; then all requests are
    written in one tight loop (about a millisecond for 100), so the burst reaches the
    server at once and the client neither slows it down nor polls."""
    host, port = apihost.removeprefix("http://").rsplit(":", 1)
    token = base64.b64encode(auth.encode()).decode()
    requests = [
        (f"POST /api/v1/namespaces/_/actions/{n}?blocking=true HTTP/1.1\r\nHost: {host}\r\n"
         f"Authorization: Basic {token}\r\nContent-Type: application/json\r\n"
         "Content-Length: 2\r\n\r\n{}").encode()
        for n in names
    ]  # fmt: skip
    conns = [await asyncio.open_connection(host, int(port)) for _ in names]
    pid = server_pid(apihost)
    spares = spares_waiting(pid)
    cpu0 = process_cpu_ns(pid)
    load0 = os.getloadavg()[0]
    t0_wall = time.time()
    t0 = time.perf_counter()
    for (_, writer), request in zip(conns, requests, strict=True):
        writer.write(request)
    t_sent = time.perf_counter()
    answers = await asyncio.wait_for(asyncio.gather(*(_blocking_invoke(c) for c in conns)), 120)
    t_final = time.perf_counter()
    server_cpu_ms = (process_cpu_ns(pid) - cpu0) / 1e6 / len(names)
    for _, writer in conns:
        writer.close()
    # A container that could not start answers 500 with its record: counted, not fatal.
    strays = [body for _, body in answers if "activationId" not in body]
    if strays:
        raise SystemExit(f"B8: {len(strays)} answers without a record: {strays[0]}")
    records = {body["activationId"]: body for _, body in answers}
    # A 202 with only the id: the blocking wait ran out (60 s: a saturated machine). Its
    # record is read once it is stored.
    late = [aid for aid, body in records.items() if "response" not in body]
    for aid in late:
        records[aid] = await _stored_record(host, int(port), token, aid)
    ok = sum(r["response"]["status"] == "success" for r in records.values())
    last_end = max(r["end"] for r in records.values()) / 1000
    recorded = last_end - t0_wall + 0.0005
    # The server's span: the first activation accepted (start - waitTime) to the last end,
    # without the time this client took to open its connections and send.
    first_accepted = min(
        r["start"] - float(annotation(r, "waitTime") or 0) for r in records.values()
    )
    span = (max(r["end"] for r in records.values()) - first_accepted) / 1000 + 0.001
    inits = [float(annotation(r, "initTime") or 0) for r in records.values()]
    waits = [float(annotation(r, "waitTime") or 0) for r in records.values()]
    return {
        "n": len(names),
        "success": ok,
        "failures": [
            r["response"] for r in records.values() if r["response"]["status"] != "success"
        ][:3],
        "sent_s": round(t_sent - t0, 4),
        "observed_s": round(t_final - t0, 3),
        "recorded_s": round(recorded, 3),
        "server_span_s": round(span, 3),
        "sandboxes_per_s": round(len(names) / span, 1),
        "sandboxes_per_s_from_client": round(len(names) / recorded, 1),
        "waitTime_ms": summary(waits),
        "initTime_ms": summary(inits),
        "server_cpu_ms_per_sandbox": round(server_cpu_ms, 2),
        "spares_waiting": spares,
        "answered_202": len(late),
        # Sandboxes that took a stem cell (the ``prewarmed`` annotation: Node.js here).
        "stem_cells_taken": sum(bool(annotation(r, "prewarmed")) for r in records.values()),
        "load_average_1min": [load0, os.getloadavg()[0]],
    }


class StemTimeline:
    """The Node.js stem cells of one server over time: its ``/metrics``
    (``squall_invoker_containers``, state ``prewarmed``: stem cells waiting; ``starting``:
    stem cells and cold starts whose runtime does not listen yet) every ``STEM_SAMPLE_S``
    in a thread, beside the bursts' start and end marks. Bounded: at most
    ``STEM_SAMPLES`` samples."""

    def __init__(self, apihost: str) -> None:
        self._url = f"{apihost}/metrics"
        self.t0 = time.monotonic()
        self.samples: list[tuple[float, int, int]] = []
        self.marks: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def cells(self) -> tuple[int, int]:
        """(prewarmed, starting) Node.js containers now."""
        prewarmed = starting = 0
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(self._url, timeout=5) as answer:
                text = answer.read().decode()
            for line in text.splitlines():
                if line.startswith('squall_invoker_containers{kind="nodejs'):
                    count = int(float(line.rsplit(" ", 1)[1]))
                    if 'state="prewarmed"' in line:
                        prewarmed += count
                    elif 'state="starting"' in line:
                        starting += count
        return prewarmed, starting

    def mark(self, what: str) -> None:
        self.marks.append((self.now(), what))

    def _run(self) -> None:
        while len(self.samples) < STEM_SAMPLES:
            self.samples.append((self.now(), *self.cells()))
            if self._stop.wait(STEM_SAMPLE_S):
                return

    def __enter__(self) -> StemTimeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, Any]:
        """The samples and marks, and per burst the cells waiting at its start."""
        at_start = []
        for t, what in self.marks:
            if what.startswith("burst") and what.endswith("start"):
                before = [s for s in self.samples if s[0] <= t]
                at_start.append(before[-1][1] if before else None)
        return {"marks": self.marks, "samples": self.samples, "prewarmed_at_burst_start": at_start}


#: The stem cell timeline's sampling period and its most samples (about 20 minutes).
STEM_SAMPLE_S = 0.2
STEM_SAMPLES = 6000


def b8(servers: dict[str, tuple[str, str, Api]], args: argparse.Namespace) -> dict[str, Any]:
    """Bursts per family on each server ("" and, with ``--before``, BEFORE), taking turns;
    each server's Node.js stem cells sampled the whole time (:class:`StemTimeline`)."""
    out: dict[str, Any] = {}
    for family in [f for f in ("python", "nodejs") if args.family in (None, f)]:
        every: dict[str, list[dict[str, Any]]] = {which: [] for which in servers}
        with contextlib.ExitStack() as stack:
            timelines = {
                which: stack.enter_context(StemTimeline(apihost))
                for which, (apihost, _, _) in servers.items()
            }
            for rep in range(args.bursts):
                for which, (apihost, auth, api) in servers.items():
                    names = [f"b8-{family}-{rep}-{i:03d}" for i in range(args.burst)]
                    for n in names:
                        create(api, n, family, 128)
                    timelines[which].mark(f"burst {rep + 1} start")
                    every[which].append(asyncio.run(burst(apihost, auth, names)))
                    timelines[which].mark(f"burst {rep + 1} end")
                    time.sleep(args.burst_gap)
            time.sleep(2.0)
        for which, runs in every.items():
            out[family + which] = summarize_bursts(runs)
            if family == "nodejs":
                out[family + which]["stem_cells"] = timelines[which].report()
    return out


def summarize_bursts(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "sandboxes_per_s": statistics.median(r["sandboxes_per_s"] for r in runs),
        "server_span_s": statistics.median(r["server_span_s"] for r in runs),
        "sandboxes_per_s_from_client": statistics.median(
            r["sandboxes_per_s_from_client"] for r in runs
        ),
        "failed": sum(r["n"] - r["success"] for r in runs),
        "server_cpu_ms_per_sandbox": statistics.median(
            r["server_cpu_ms_per_sandbox"] for r in runs
        ),
        "runs": runs,
    }


# -- report ----------------------------------------------------------------------------


def verdict(value: float | None, goal: float, higher_is_better: bool = False) -> str:
    if value is None:
        return "n/a"
    ok = value >= goal if higher_is_better else value <= goal
    return "meets" if ok else f"misses ({value / goal:.2g}x)"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, value, goal, verdict) for the table."""
    out = [(k, v["error"], "", "failed") for k, v in results.items()
           if isinstance(v, dict) and "error" in v]  # fmt: skip
    results = {k: v for k, v in results.items() if not (isinstance(v, dict) and "error" in v)}
    if "b1" in results:
        for f, r in results["b1"].items():
            ratio = f", {r['/base p50']:.1f}x base" if "/base p50" in r else ""
            judged = ("≤ 1 / ≤ 3 ms", verdict(r["p50"], 1.0) + " / " + verdict(r["p99"], 3.0))
            out.append((f"B1 warm invoke {f} p50/p99",
                        f"{r['p50']:.3f} / {r['p99']:.3f} ms{ratio}",
                        *(judged if f != "baseline" else ("", ""))))  # fmt: skip
    if "b2" in results:
        for key, ms in B2_GOALS.items():
            r = results["b2"].get(key)
            if r is None:
                out.append((f"B2 {key} cold-warm", "not measured", f"≤ {ms:g} ms", "n/a"))
                continue
            d, it, di = r["delta"], r["initTime"], r["delta idle"]
            out.append((f"B2 {key} cold-warm p50/p99",
                        f"{d['p50']:.1f} / {d['p99']:.1f} ms (initTime p50 {it['p50']:.0f} ms, "
                        f"{r['prewarmed']}/{d['n']} stem cells; cold-idle p50 "
                        f"{di['p50']:.1f} ms)",
                        f"≤ {ms:g} ms", verdict(d["p50"], ms)))  # fmt: skip
            bare = results["b2"].get(key + NO_NETWORK)
            if bare is not None:
                d = bare["delta"]
                cost = r["delta"]["p50"] - d["p50"]
                out.append((f"B2 {key}{NO_NETWORK} p50/p99",
                            f"{d['p50']:.1f} / {d['p99']:.1f} ms (network costs {cost:+.1f} ms)",
                            "", ""))  # fmt: skip
            before = results["b2"].get(key + BEFORE)
            if before is not None:
                d, it, di = before["delta"], before["initTime"], before["delta idle"]
                change = r["delta"]["p50"] / d["p50"] if d["p50"] else float("nan")
                out.append((f"B2 {key}{BEFORE} p50/p99",
                            f"{d['p50']:.1f} / {d['p99']:.1f} ms (initTime p50 {it['p50']:.0f} "
                            f"ms; after/before {change:.2f}; cold-idle p50 {di['p50']:.1f} ms)",
                            "", ""))  # fmt: skip
    if "b3" in results:
        r50 = results["b3"].get("50 conn", {}).get("rps")
        for key, r in results["b3"].items():
            goal, v = "", ""
            if key == "50 conn":
                goal, v = "≥ 5000/s", verdict(r["rps"], 5000, True)
            elif "actions" in key:
                goal = "≥ 50 conn / 2"
                v = verdict(r["rps"], (r50 or 0) / 2, True) + f"; {r['rps'] / 5000:.2f}x of 5000"
            base = f", base {r['baseline']['rps']:.0f}/s" if "baseline" in r else ""
            out.append((f"B3 throughput {key}",
                        f"{r['rps']:.0f}/s (p50 {r['p50']:.2f} ms{base})", goal, v))  # fmt: skip
    if "b6" in results:
        for f, r in results["b6"].items():
            goal = "≥ 500/GiB" if f == "python" else ""
            v = verdict(r["per_gib_pss_with_shared"], 500, True) if f == "python" else ""
            shared = f" (+{r['shared_pss_mb']:.1f} MB zygote)" if r["shared_pss_mb"] else ""
            out.append((f"B6 warm {f} container",
                        f"USS {r['uss_mb']:.1f}, PSS {r['pss_mb']:.1f} MB{shared} → "
                        f"{r['per_gib_pss_with_shared']}/GiB PSS, {r['per_gib_uss']}/GiB USS",
                        goal, v))  # fmt: skip
    if "b8" in results:
        for f, r in results["b8"].items():
            out.append((f"B8 burst of {results['parameters']['burst']} {f}",
                        f"{r['sandboxes_per_s']:.0f} sandboxes/s ({r['server_span_s']:.2f} s; "
                        f"{r['sandboxes_per_s_from_client']:.0f}/s from the client's t0"
                        f"{'; ' + str(r['failed']) + ' failed' if r['failed'] else ''}; "
                        f"each: {', '.join(str(round(x['sandboxes_per_s'])) for x in r['runs'])}"
                        f" (spares: {', '.join(str(x.get('spares_waiting')) for x in r['runs'])}"
                        f"{stem_cells_row(r)}); "
                        f"server CPU {r.get('server_cpu_ms_per_sandbox', 0):.1f} ms each)",
                        "≥ 200/s", verdict(r["sandboxes_per_s"], 200, True)))  # fmt: skip
    return out


def stem_cells_row(r: dict[str, Any]) -> str:
    """B8's stem cells per burst: waiting at its start, taken by it."""
    if "stem_cells" not in r:
        return ""
    waiting = ", ".join(str(c) for c in r["stem_cells"]["prewarmed_at_burst_start"])
    taken = ", ".join(str(x.get("stem_cells_taken")) for x in r["runs"])
    return f"; stem cells waiting: {waiting}, taken: {taken}"


class LoadSampler:
    """The 1-minute load average every 5 s in a thread, for the report."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(float(Path("/proc/loadavg").read_text().split()[0]))
            if self._stop.wait(5.0):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, float]:
        s = self.samples
        return {"min": min(s), "median": statistics.median(s), "max": max(s), "n": len(s)}


def phase(fn: Any, *a: Any) -> Any:
    """One benchmark; a failure is recorded and the others still run."""
    try:
        return fn(*a)
    except (Exception, SystemExit) as e:
        print(f"{fn.__name__} failed: {e!r}", file=sys.stderr)
        return {"error": repr(e)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="b1,b2,b3,b6,b8")
    parser.add_argument("--repeats", type=int, default=3, help="runs per B1/B3 figure")
    parser.add_argument("--requests", type=int, default=1000, help="B1 requests per run")
    parser.add_argument("--duration", type=float, default=4.0, help="B3 seconds per run")
    parser.add_argument("--mix", type=int, default=100, help="B3 distinct actions")
    parser.add_argument("--colds", type=int, default=20, help="B2 samples per tier")
    parser.add_argument("--k", type=int, default=20, help="B6 containers per kind")
    parser.add_argument("--burst", type=int, default=100, help="B8 actions per burst")
    parser.add_argument("--bursts", type=int, default=2, help="B8 bursts per kind")
    parser.add_argument(
        "--burst-gap", type=float, default=2.0,
        help="B8 seconds after each burst (the stem cells' refill needs ≈ 6 s of CPU per 100)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--before", type=Path, help="B2, B8: also a server of this tree (another version), in turn"
    )
    parser.add_argument("--family", choices=sorted(CODE), help="B2, B8: only this family")
    args = parser.parse_args()
    only = set(args.only.split(","))
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed")
    started = time.time()
    results: dict[str, Any] = {
        "parameters": vars(args) | {"output": str(args.output), "before": str(args.before)}
    }
    with LoadSampler() as sampler:
        if only & {"b1", "b2", "b3"}:
            with server({}) as (apihost, auth, _home):
                api = Api(apihost, auth)
                if "b1" in only:
                    results["b1"] = phase(b1, api, apihost, auth, node, args)
                if "b2" in only:
                    bare = {"SQUALL_SANDBOX_NETWORK": "none"}
                    cold_env = {"SQUALL_STEM_CELLS": ""}
                    with (
                        server(cold_env, zygote=False) as (cold, cold_auth, _),
                        server(bare) as (main2, main2_auth, _),
                        server({**cold_env, **bare}, zygote=False) as (cold2, cold2_auth, _),
                        contextlib.ExitStack() as others,
                    ):
                        apis = {
                            "main": api,
                            "cold": Api(cold, cold_auth),
                            "main" + NO_NETWORK: Api(main2, main2_auth),
                            "cold" + NO_NETWORK: Api(cold2, cold2_auth),
                        }
                        if args.before is not None:
                            host, key, _ = others.enter_context(server({}, tree=args.before))
                            apis["before"] = Api(host, key)
                            host, key, _ = others.enter_context(
                                server(cold_env, zygote=False, tree=args.before)
                            )
                            apis["cold before"] = Api(host, key)
                        results["b2"] = phase(b2, apis, args)
                        for other in list(apis.values())[1:]:
                            other.close()
                if "b3" in only:
                    results["b3"] = phase(b3, api, apihost, auth, node, args)
                api.close()
        if "b6" in only:
            with server({"SQUALL_STEM_CELLS": ""}) as (apihost, auth, _home):
                api = Api(apihost, auth)
                results["b6"] = phase(b6, api, args)
                api.close()
        if "b8" in only:
            # The default stem cells: Node.js's are reactive (they follow bursts, of any
            # memory); Python's zygote forks its own (no stem cell of 128 MB).
            with server({}) as (apihost, auth, _home):
                api = Api(apihost, auth)
                servers = {"": (apihost, auth, api)}
                with contextlib.ExitStack() as others:
                    if args.before is not None:
                        host, key, _ = others.enter_context(server({}, tree=args.before))
                        servers[BEFORE] = (host, key, Api(host, key))
                    results["b8"] = phase(b8, servers, args)
                api.close()
    results["load_average_1min"] = sampler.report()
    head = report_head("invoker_bench", started, "started", node)
    head["machine"]["kernel"] = os.uname().release
    report = {**head, "results": results, "table": rows(results)}
    la = results["load_average_1min"]
    print(f"machine: {os.cpu_count()} CPUs, kernel {os.uname().release}; 1-min load average "
          f"during the run: median {la['median']}, {la['min']}-{la['max']}")  # fmt: skip
    for r in rows(results):
        print(f"{r[0]:<36} {r[1]:<62} {r[2]:<14} {r[3]}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
