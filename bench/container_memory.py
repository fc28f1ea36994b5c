"""What each process of a warm container costs: USS, PSS and what it is for.

    .venv/bin/python bench/container_memory.py [--count 20] [--kind K] [--runs 1] [--detail]

Starts a ``ProcessContainerFactory`` (isolation on, the Python zygote on) in a temporary
directory, creates ``--count`` containers of ``--kind`` for one namespace, initializes a
no-op action in each and runs it ``--runs`` times (default once), then reads
``/proc/PID/smaps_rollup`` of every process a container adds:

- its cgroup's processes (for a zygote's container: its pid 1 and what it forked; for one
  started through bubblewrap: the sandbox's init and the runtime);
- processes outside its cgroup that exist only for it: the parent of its first process
  when that parent is neither the zygote nor the supervisor (the zygote's per-container
  monitor of old; bubblewrap's outer process for a container started through it).

Per role: USS (private pages), PSS (shared pages split between their users) and the
memory cgroup's own charge (``memory.stat`` rss + mapped_file, v1; ``anon + file`` v2).
The shared overhead (the zygote's cgroup and its spares) is reported apart and spread
over the containers. ``per GiB`` = 1024 / (PSS per container + shared share).

Needs root. Prints a table, writes ``bench/results/container_memory.json``. The load
average is recorded before and after (memory figures hardly move with load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from squall.sandbox.process import ProcessContainer, ProcessContainerFactory  # noqa: E402

RESULTS = REPO / "bench" / "results" / "container_memory.json"
#: A no-op action per family: any kind of the manifest (``python:3.13``, ``nodejs:22``)
#: can be measured, the operator's kinds (SQUALL_RUNTIMES_MANIFEST) too.
NOOP = {
    "python": "def main(p):\n    return {}\n",
    "nodejs": "function main(p) { return {}; }\n",
}


def smaps(pid: int) -> dict[str, int]:
    """kB fields of ``/proc/PID/smaps_rollup`` (empty when the process is gone)."""
    fields: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return fields
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key] = int(parts[0])
    fields["Uss"] = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return fields


def parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def cgroup_charge_kb(container: ProcessContainer) -> int:
    """What the container's memory cgroup is charged for its processes' pages."""
    if container.cgroup is None:
        return 0
    for directory in container.cgroup.directories:
        stat = directory / "memory.stat"
        if stat.exists():
            values = dict(line.split() for line in stat.read_text().splitlines())
            if "rss" in values:  # v1
                return (int(values["rss"]) + int(values.get("mapped_file", 0))) // 1024
            return (int(values.get("anon", 0)) + int(values.get("file", 0))) // 1024
    return 0


def roles(container: ProcessContainer, known: set[int]) -> list[tuple[str, int]]:
    """(role, pid) of every process that exists for ``container``; ``known`` are the
    shared ones (zygote, supervisor, ...) never counted here."""
    assert container.cgroup is not None
    inside = sorted(container.cgroup.pids())
    found: list[tuple[str, int]] = []
    first = container.sandbox.pid if container.sandbox is not None else None
    for pid in inside:
        role = "pid 1" if pid == first else "runtime" if parent(pid) == first else "bwrap"
        found.append((role, pid))
    if first is not None:
        above = parent(first)
        # A zygote's per-container monitor (a zygote.py forked by the zygote.py), or
        # bubblewrap's outer process; never the zygote or the supervisor's pid 1.
        monitor = "zygote.py" in comm(above) and name(parent(above)).startswith("python")
        outside = above not in known and "pid1.py" not in comm(above)
        if above and above not in inside and (monitor or outside):
            found.append(("outside (monitor)", above))
    return found


DETAIL = False


def detail(pid: int) -> None:
    """Private pages per mapping of ``pid`` (``--detail``)."""
    current = ""
    sizes: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):
            current = head[5] if len(head) > 5 else "[anon]"
        elif head[0] in ("Private_Dirty:", "Private_Clean:"):
            sizes[current] = sizes.get(current, 0) + int(head[1])
    for mapping, kb in sorted(sizes.items(), key=lambda kv: -kv[1])[:8]:
        print(f"    {kb:>6} kB  {mapping}")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


async def measure(kind: str, count: int, runs: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="squall-contmem-") as home:
        factory = ProcessContainerFactory(Path(home), "127.0.0.1:1")
        containers: list[ProcessContainer] = []
        try:
            for _ in range(count):
                container = await factory.create(kind, 256, tenant="bench")
                answer = await container.initialize(
                    {"code": NOOP[kind.partition(":")[0]]}, timeout=20
                )
                assert answer.status == 200, answer
                for _ in range(runs):
                    ran = await container.run({"value": {}}, timeout=20)
                    assert ran.status == 200, ran
                containers.append(container)
            await asyncio.sleep(1.0)  # spares forked again after the last create
            if DETAIL:
                for role, pid in roles(containers[0], set()):
                    print(role, pid)
                    detail(pid)
            zygote = factory.zygote_of("bench", kind)  # None for a Node.js kind
            shared: set[int] = zygote.pids() if zygote is not None else set()
            known = set(shared)
            if factory.supervisor is not None:
                known |= factory.supervisor.pids()
            per_role: dict[str, list[dict[str, int]]] = {}
            totals: list[dict[str, float]] = []
            sample: list[tuple[str, int, str]] = []
            for index, container in enumerate(containers):
                shared -= {pid for _, pid in roles(container, known)}
                total = {"Uss": 0.0, "Pss": 0.0, "charge": cgroup_charge_kb(container) / 1024}
                for role, pid in roles(container, known):
                    fields = smaps(pid)
                    per_role.setdefault(role, []).append(fields)
                    total["Uss"] += fields.get("Uss", 0) / 1024
                    total["Pss"] += fields.get("Pss", 0) / 1024
                    if index == 0:
                        sample.append((role, pid, comm(pid)))
                totals.append(total)
            shared_pss = sum(smaps(p).get("Pss", 0) for p in shared) / 1024
        finally:
            await factory.close()
    pss = statistics.mean(t["Pss"] for t in totals)
    with_shared = pss + shared_pss / count
    return {
        "kind": kind,
        "count": count,
        "roles": {
            role: {
                "processes": len(values) / count,
                "uss_kb": round(statistics.mean(v.get("Uss", 0) for v in values)),
                "pss_kb": round(statistics.mean(v.get("Pss", 0) for v in values)),
                "rss_kb": round(statistics.mean(v.get("Rss", 0) for v in values)),
                "anon_kb": round(statistics.mean(v.get("Anonymous", 0) for v in values)),
            }
            for role, values in per_role.items()
        },
        "uss_mb": round(statistics.mean(t["Uss"] for t in totals), 2),
        "pss_mb": round(pss, 2),
        "cgroup_charge_mb": round(statistics.mean(t["charge"] for t in totals), 2),
        "shared_pss_mb": round(shared_pss, 2),
        "pss_with_shared_mb": round(with_shared, 2),
        "per_gib": int(1024 / with_shared),
        "per_gib_without_shared": int(1024 / pss),
        "sample": sample,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--kind", default="python:3.13", help="python:* or nodejs:*")
    parser.add_argument("--runs", type=int, default=1, help="/run per container")
    parser.add_argument("--detail", action="store_true", help="private kB per mapping")
    args = parser.parse_args()
    if args.kind.partition(":")[0] not in NOOP:
        parser.error(f"--kind: a kind of family {' or '.join(NOOP)}")
    global DETAIL
    DETAIL = args.detail
    before = loadavg()
    result = asyncio.run(measure(args.kind, args.count, args.runs))
    result["loadavg_before"], result["loadavg_after"] = before, loadavg()
    print(f"{args.kind}: {args.count} warm containers; load {before} -> {result['loadavg_after']}")
    print(f"{'role':<20} {'procs':>5} {'USS kB':>8} {'PSS kB':>8} {'RSS kB':>8}")
    for role, r in result["roles"].items():
        print(
            f"{role:<20} {r['processes']:>5.1f} {r['uss_kb']:>8} {r['pss_kb']:>8} {r['rss_kb']:>8}"
        )
    print(
        f"per container: USS {result['uss_mb']} MB, PSS {result['pss_mb']} MB, cgroup charge "
        f"{result['cgroup_charge_mb']} MB; shared (zygote + spares) {result['shared_pss_mb']} MB"
        f" -> {result['pss_with_shared_mb']} MB: {result['per_gib']}/GiB "
        f"({result['per_gib_without_shared']}/GiB without the shared share)"
    )
    for role, pid, cmd in result["sample"]:
        print(f"  e.g. {role}: {pid} {cmd[:70]}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    (RESULTS.parent / f"container_memory-{args.kind.replace(':', '-')}.json").write_text(
        json.dumps(result, indent=2)
    )


if __name__ == "__main__":
    main()
