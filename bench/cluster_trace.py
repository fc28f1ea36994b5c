"""One warm blocking invoke through a local cluster, step by step, from system calls.

    .venv/bin/python bench/cluster_trace.py [--invokes 40] [--kind python|nodejs]
        [--baseline DIR]   # the same on another checkout first, then this tree

Starts the cluster of ``cluster_bench.py`` (2 controllers, 2 invokers, the machine's
PostgreSQL in a fresh schema and NATS JetStream with a unique prefix), warms a no-op
action, then attaches ``perf trace`` (tracepoints: far lighter than ``strace``, which
slowed a Go nats-server tenfold) to every member, nats-server, PostgreSQL's processes
and this process, and sends ``--invokes`` sequential blocking invokes to controller 0
over one keep-alive connection, a pause after each. From the socket and disk system
calls of each invoke it finds the steps below, in order, and prints the median and the
minimum of each gap between two steps (ms), with the load average before and after:

    client sends the request, controller 0 reads it, publishes the activation (JetStream),
    the invoker reads it, sends its ack (and next pull), reads the ack's confirmation,
    sends the started mark to PostgreSQL (since session 7 with the ack, whose answer is
    then off the path and not a step), reads its commit, sends /run to the runtime,
    reads the answer, sends the final record, reads its commit, hands the completion
    to controller 0 (a core NATS request), which reads it and writes the HTTP answer,
    which the client reads.

A gap between two steps of one process is that process's own work (Python, and waiting
for the CPU on a loaded machine); a gap across processes is the other side's work plus
the wake-ups (nats-server storing and delivering, PostgreSQL writing and flushing its
WAL). ``perf trace`` itself adds a few µs per traced call. Needs ``perf`` (root) and
``node`` (the warm-up goes through ``bench/load.js``); the traced invokes come from
``httpx`` in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cluster_bench import measure_cluster, nats_server_pid, postgres_pids  # noqa: E402
from invoke_latency import REPO, create_actions, load, targets  # noqa: E402

from squall.cli.local_cluster import LocalCluster  # noqa: E402

RESULTS = HERE / "results" / "cluster_trace.json"
SYSCALLS = "sendto,recvfrom,write,writev,read"
_LINE = re.compile(r"\s*([\d.]+) \(\s*[\d.]+ ms\): (\S+)/(\d+) (\w+)\((.*?)\)\s+= (-?\d+)")
# A call another traced event interrupted is printed in two lines, both stamped with its
# entry: ``( ): comm/pid call(arguments) ...``, later ``( n ms): comm/pid ... [continued]:
# call()) = result``. Joined by pid, as one call.
_UNFINISHED = re.compile(r"\s*([\d.]+) \(\s*\): (\S+)/(\d+) (\w+)\((.*)\)\s+\.\.\.\s*$")
_CONTINUED = re.compile(
    r"\s*[\d.]+ \(\s*[\d.]+ ms\): \S+/(\d+)\s+\.\.\. \[continued\]: (\w+)\(\)\)\s+= (-?\d+)"
)

Event = tuple[float, str, str, int, int]  # time (ms), who, system call, fd, bytes


def parse(text: str, roles: dict[int, str]) -> list[Event]:
    """``perf trace`` lines as (time, who, call, fd, bytes), in time order; failed calls
    (EAGAIN) and processes of no known role are left out."""
    events: list[Event] = []
    unfinished: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is not None:
            at, comm, pid, call, arguments, ret = match.groups()
        elif (begun := _UNFINISHED.match(line)) is not None:
            unfinished[begun.group(3)] = begun.groups()
            continue
        elif (ended := _CONTINUED.match(line)) is not None:
            pid, call, ret = ended.groups()
            started = unfinished.pop(pid, None)
            if started is None or started[3] != call:
                continue
            at, comm, _, _, arguments = started
        else:
            continue
        size = int(ret)
        fd = re.search(r"fd: (\d+)", arguments)
        if size < 0 or fd is None or float(at) > 1e9:
            continue  # failed, no fd, or a time perf wrapped below its start
        who = roles.get(int(pid)) or {"nats-server": "nats", "postgres": "pg"}.get(comm)
        if who is not None:
            events.append((float(at), who, call, int(fd.group(1)), size))
    events.sort()
    return events


def _step(
    events: list[Event],
    start: int,
    who: str,
    calls: tuple[str, ...],
    fd: int | None = None,
    sizes: tuple[int, int] = (0, 1 << 30),
) -> int:
    """The first event from ``start`` of ``who`` making one of ``calls`` (on ``fd``, of a
    size in ``sizes``)."""
    for i in range(start, len(events)):
        _, w, call, f, size = events[i]
        if w == who and call in calls and fd in (None, f) and sizes[0] <= size < sizes[1]:
            return i
    raise LookupError(who)


def steps(events: list[Event]) -> list[list[tuple[str, float]]]:
    """Each invoke's steps (name, time), found in order between one request the client
    sends and the next."""
    starts = [
        i
        for i, (_, who, call, _, _) in enumerate(events)
        if who == "client" and call == "sendto" and (i == 0 or events[i - 1][2] != "sendto")
    ]
    invokes: list[list[tuple[str, float]]] = []
    if not starts:
        return invokes
    for first, end in zip(starts, [*starts[1:], len(events)], strict=True):
        found = _one(events[first:end])
        if found is not None:
            invokes.append(found)
    # One shape per tree (with the ack's answer as a step, or beside the mark): the
    # most common one, should a stray invoke of the other come up.
    shapes = Counter(len(found) for found in invokes)
    return [found for found in invokes if shapes and len(found) == shapes.most_common(1)[0][0]]


def _one(part: list[Event]) -> list[tuple[str, float]] | None:
    """The steps of the invoke whose events are ``part``; None if it has not all of them."""
    found: list[tuple[str, float]] = [("client sends the request", part[0][0])]

    def at(name: str, i: int) -> int:
        found.append((name, part[i][0]))
        return i

    try:
        i = at("controller reads it", _step(part, 0, "controller0", ("read",)))
        i = at("controller publishes", _step(part, i, "controller0", ("write",)))
        # The activation (~600 bytes), not a health ping (~200) nor an ack (<100).
        j = next(
            k
            for k in range(i, len(part))
            if part[k][1].startswith("invoker") and part[k][2] == "read" and part[k][4] > 300
        )
        invoker, nats = part[j][1], part[j][3]
        i = at("invoker reads the activation", j)
        ack = _step(part, i + 1, invoker, ("writev", "write"), nats)
        answer = _step(part, ack + 1, invoker, ("read",), nats)
        mark = _step(part, i + 1, invoker, ("sendto",))
        if answer < mark:
            # The ack confirmed before the mark goes out (main before session 7); since,
            # both go out together and /run waits for the mark only (invoker/intake.py).
            at("invoker sends its ack", ack)
            at("invoker reads the ack's answer", answer)
        i = at("invoker sends the started mark", mark)
        pg = part[i][3]
        i = at("invoker reads its commit", _step(part, i + 1, invoker, ("recvfrom",), pg))
        i = at("invoker sends /run", _step(part, i + 1, invoker, ("write",)))
        runtime = part[i][3]
        i = at("invoker reads /run's answer", _step(part, i + 1, invoker, ("read",), runtime))
        # Maybe on another pooled connection than the mark (the group commit's flusher
        # returns its connection once idle, and takes whichever the pool gives next).
        i = at("invoker sends the final record", _step(part, i + 1, invoker, ("sendto",)))
        pg = part[i][3]
        i = at("invoker reads its commit", _step(part, i + 1, invoker, ("recvfrom",), pg))
        i = at(
            "invoker hands the completion over",
            _step(part, i + 1, invoker, ("write", "writev"), nats, (300, 1 << 30)),
        )
        i = at(
            "controller reads the completion",
            _step(part, i + 1, "controller0", ("read",), sizes=(300, 1 << 30)),
        )
        i = at("controller writes the answer", _step(part, i + 1, "controller0", ("write",)))
        at("client reads it", _step(part, i + 1, "client", ("recvfrom",)))
    except (LookupError, StopIteration):
        return None  # not a warm invoke of this shape (a cold one, a log line...)
    return found


def gaps(invokes: list[list[tuple[str, float]]]) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = []
    for k in range(1, len(invokes[0])):
        values = [inv[k][1] - inv[k - 1][1] for inv in invokes]
        table.append(
            {
                "from": invokes[0][k - 1][0],
                "to": invokes[0][k][0],
                "median_ms": round(statistics.median(values), 3),
                "min_ms": round(min(values), 3),
            }
        )
    totals = [inv[-1][1] - inv[0][1] for inv in invokes]
    table.append(
        {
            "from": "total",
            "to": "",
            "median_ms": round(statistics.median(totals), 3),
            "min_ms": round(min(totals), 3),
        }
    )
    return table


def _traceable(pid: int) -> bool:
    """Alive and not a zombie (a private PostgreSQL's backend left unreaped by its
    parent: perf refuses the whole list for it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def trace_once(args: argparse.Namespace, node: str) -> dict[str, Any]:
    def on(apihost: str, auth: str, local: LocalCluster) -> dict[str, Any]:
        name = create_actions(apihost, auth, str(os.getpid()))[args.kind]
        request = targets(apihost, auth, {args.kind: name})[args.kind]
        load(node, {**request, "connections": 1, "requests": 300})  # warm
        roles = {m.process.pid: m.name for m in local.members.values() if m.process}
        roles[os.getpid()] = "client"
        nats = nats_server_pid(args.nats)
        with tempfile.NamedTemporaryFile(prefix="cluster-trace-", suffix=".txt") as out:
            # perf gives up when a process it was given is gone or a zombie: a PostgreSQL
            # backend of another client may end between listing and attaching.
            # Listed again and retried (a few times) until perf stays attached.
            for _ in range(10):
                pids = [*roles, *postgres_pids(), *([nats] if nats is not None else [])]
                alive = [p for p in pids if _traceable(p)]
                perf = subprocess.Popen(
                    [
                        "perf",
                        "trace",
                        "-o",
                        out.name,
                        "-e",
                        SYSCALLS,
                        "-p",
                        ",".join(map(str, alive)),
                    ]
                )
                time.sleep(2.0)  # perf attaches
                if perf.poll() is None:
                    break
            kept = args.output.with_suffix(".perf.txt")
            try:
                user, key = auth.split(":", 1)
                with httpx.Client(auth=(user, key), timeout=30) as client:
                    for _ in range(args.invokes):
                        client.post(request["url"], content=b"{}").raise_for_status()
                        time.sleep(0.05)  # apart: one invoke's calls never mix with the next's
            finally:
                perf.send_signal(signal.SIGINT)
                perf.wait(timeout=30)
            text = Path(out.name).read_text()
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(text)  # the raw trace, kept beside the results
            invokes = steps(parse(text, roles))
        if not invokes:
            raise SystemExit(f"no invoke found in the trace {kept} (is perf trace allowed?)")
        return {"invokes": len(invokes), "steps": gaps(invokes)}

    return measure_cluster(args, node, on)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invokes", type=int, default=40)
    parser.add_argument("--kind", choices=("python", "nodejs"), default="python")
    parser.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--baseline", type=Path, help="another checkout: traced first")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    node = subprocess.run(["which", "node"], capture_output=True, text=True).stdout.strip()
    if not node:
        raise SystemExit("node is needed for bench/load.js (the warm-up)")
    load_before = Path("/proc/loadavg").read_text().strip()
    here = Path.cwd()
    results: dict[str, Any] = {}
    trees = [("baseline", args.baseline)] if args.baseline is not None else []
    for label, tree in [*trees, ("this", REPO)]:
        os.chdir(tree)  # the members run `python -m squall...` from here
        try:
            results[label] = trace_once(args, node)
        finally:
            os.chdir(here)
    load_after = Path("/proc/loadavg").read_text().strip()
    # One table per tree: their steps differ when one confirms the ack before the mark.
    for label, result in results.items():
        print(f"{label:<78}{'median / min ms':>24}")
        for row in result["steps"]:
            gap = f"{row['from']} -> {row['to']}" if row["to"] else "total"
            print(f"  {gap:<76}{row['median_ms']:>15.3f} /{row['min_ms']:>7.3f}")
    found = ", ".join(f"{label} {result['invokes']}" for label, result in results.items())
    print(f"invokes found: {found}")
    print(f"load average before: {load_before}\nload average after:  {load_after}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {"load_before": load_before, "load_after": load_after, "results": results}
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
