"""Where a ``squall standalone``'s memory is: its process tree by role, its server by mapping.

Used by ``memory_at_concurrency.py`` (``breakdown``). PSS from ``/proc/PID/smaps_rollup``
and ``/proc/PID/smaps`` (shared pages split among the processes that map them, as
``smem``); only processes of the tree under the server's pid are read.

Roles, from each process's command line and parent:

- ``server``: the standalone process itself (controller, invoker, HTTP);
- ``supervisor``: the sandbox supervisor (``pid1.py``: its launcher and pid 1);
- ``zygote``: a Python zygote (the processes in a ``zygote-*`` memory cgroup: it and the
  bubblewraps above it);
- ``python containers (zygote)``: the zygote's forked children, one per container;
- ``nodejs containers``, ``python containers (bwrap)``: runtimes started through
  bubblewrap (stem cells among them), with their two bubblewrap processes;
- ``other``: anything else.

The server's mappings fall in: ``python heap`` (anonymous memory and ``[heap]``: objects,
pymalloc arenas, malloc, thread stacks), ``extensions (site-packages)`` and ``stdlib
extensions`` (compiled modules' pages), ``libpython / interpreter``, ``system libraries``
(``/usr/lib``...), ``other files`` (the store's shared memory file, ...).
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from pathlib import Path

MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    return ""


def _memory_cgroup(pid: int) -> str:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            hierarchy, _, path = line.partition(":")[2].partition(":")
            if hierarchy in ("memory", ""):
                return path
    return ""


def roles(pids: list[int], ppids: dict[int, int], server: int) -> dict[int, str]:
    """pid → role (see the module docstring) for every pid of the server's tree."""
    command = {p: _cmdline(p) for p in pids}
    found: dict[int, str] = {}
    # The zygote runs in a cgroup of its own (``zygote-<id>``); its forked containers,
    # re-parented to the zygote sandbox's bubblewrap, are each in their container's.
    zygotes = {p for p in pids if Path(_memory_cgroup(p)).name.startswith("zygote-")}
    for p in pids:
        cmd = command[p]
        if p == server:
            found[p] = "server"
        elif "pid1.py" in cmd:
            found[p] = "supervisor"
        elif p in zygotes:
            found[p] = "zygote"  # the bubblewraps above it too
        elif "zygote.py" in cmd:
            found[p] = "python containers (zygote)"
        elif "/bin/bwrap" in cmd or cmd.startswith("bwrap"):
            found[p] = "bwrap"  # resolved below: whose bubblewrap it is
        elif "proxy.js" in cmd:
            found[p] = "nodejs containers"
        elif "proxy.py" in cmd:
            found[p] = "python containers (bwrap)"
        else:
            found[p] = "other"
    children: dict[int, list[int]] = {}
    for p in pids:
        children.setdefault(ppids.get(p, 0), []).append(p)
    for p in [p for p, role in found.items() if role == "bwrap"]:
        # A bubblewrap belongs to the runtime below it (bwrap → bwrap → runtime).
        below, todo = "other", list(children.get(p, []))
        while todo:
            q = todo.pop()
            if found.get(q) not in (None, "bwrap"):
                below = found[q]
                break
            todo += children.get(q, [])
        found[p] = "zygote" if below in ("zygote", "python containers (zygote)") else below
    return found


def _category(path: str) -> str:
    if not path or path.startswith("[heap]") or path.startswith("[anon"):
        return "python heap"
    if path.startswith("["):
        return "other ([stack], [vdso], ...)"
    if "site-packages/" in path:
        return "extensions (site-packages)"
    if "lib-dynload" in path:
        return "stdlib extensions"
    if "libpython" in path or re.search(r"/python3(\.\d+)?$", path):
        return "libpython / interpreter"
    if path.startswith(("/usr/lib", "/lib")):
        return "system libraries"
    return "other files"


def by_mapping(pid: int) -> dict[str, float]:
    """PSS in MiB of ``pid`` by mapping category (see the module docstring)."""
    pss: Counter[str] = Counter()
    current = "other files"
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            if MAPPING.match(line):
                fields = line.split(None, 5)
                current = _category(fields[5].strip() if len(fields) > 5 else "")
            elif line.startswith("Pss:"):
                pss[current] += int(line.split()[1])
    return {k: round(v / 1024, 2) for k, v in pss.most_common()}


def by_role(
    pss_kb: dict[int, float], role: dict[int, str], dirty_kb: dict[int, float] | None = None
) -> dict[str, dict[str, float]]:
    """role → processes, PSS and private dirty memory in MiB. Private dirty memory
    (heaps, stacks) does not move with what else runs on the host: PSS's share of a
    binary's pages does (the Node.js binary's text, ~30 MiB touched, is split among
    every ``node`` that maps the same file), and so does USS (those pages count as
    private while no other process maps them)."""
    out: dict[str, dict[str, float]] = {}
    for pid, kb in pss_kb.items():
        entry = out.setdefault(
            role.get(pid, "other"), {"processes": 0, "pss_mb": 0.0, "dirty_mb": 0.0}
        )
        entry["processes"] += 1
        entry["pss_mb"] += kb / 1024
        entry["dirty_mb"] += (dirty_kb or {}).get(pid, 0.0) / 1024
    return {
        k: {**v, "pss_mb": round(v["pss_mb"], 1), "dirty_mb": round(v["dirty_mb"], 1)}
        for k, v in sorted(out.items())
    }
