"""A Node.js stem cell's cold start in counts, pipelined (/init and /run in one write) or in
two exchanges, in turn: the runtime main thread's sleeps (voluntary context switches) and
CPU (``/proc/<pid>/schedstat``) from before the /init to the /run answered. Counts, not wall
time: they hold on a loaded machine (the load average is printed).

    PYTHONPATH=. .venv/bin/python bench/node_take_counts.py --samples 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from pathlib import Path

from squall.sandbox.process import ProcessContainer, ProcessContainerFactory

CODE = "function main(args) { return {ok: true}; }"


def node_pid(root: int) -> int:
    """The ``node`` process under the container's first process (the sandbox's init)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(name))
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "node":
                return pid
        except OSError:
            pass
        todo += children.get(pid, [])
    raise RuntimeError(f"no node process under {root}")


def counts(pid: int) -> tuple[int, int]:
    """(voluntary context switches, ns on CPU) of the process's main thread."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    sleeps = next(int(line.split()[1]) for line in status if line.startswith("voluntary_ctxt"))
    return sleeps, int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


async def one(factory: ProcessContainerFactory, pipelined: bool) -> tuple[int, int]:
    container: ProcessContainer = await factory.create("nodejs:20", 256, idle=True)
    try:
        await asyncio.sleep(0.4)  # left idle, it warms up (50 ms after its start)
        pid = node_pid(container.pid)
        before = counts(pid)
        if pipelined:
            run: dict[str, object] = {"value": {}}
            init = {"code": CODE}
            _, answer = await container.initialize_and_run(init, run, 20, lambda r: True)
            assert answer is not None and answer.status == 200, answer
        else:
            assert (await container.initialize({"code": CODE}, 20)).status == 200
            assert (await container.run({"value": {}}, 20)).status == 200
        after = counts(pid)
        return after[0] - before[0], after[1] - before[1]
    finally:
        await container.destroy()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    samples = parser.parse_args().samples
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as home:
        factory = ProcessContainerFactory(Path(home) / "containers", "https://api")
        try:
            results: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
            for _ in range(samples):
                for pipelined in (True, False):  # in turn
                    results[pipelined].append(await one(factory, pipelined))
        finally:
            await factory.close()
    for pipelined, rows in results.items():
        sleeps = statistics.median(row[0] for row in rows)
        cpu_ms = statistics.median(row[1] for row in rows) / 1e6
        name = "pipelined" if pipelined else "two exchanges"
        print(f"{name:14} sleeps median {sleeps}  main-thread CPU median {cpu_ms:.3f} ms")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
