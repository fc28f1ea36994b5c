"""Helpers to drive the pool tests' real runtimes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PY = "python:3.13"  # the default Python kind: its containers are forked by the zygote
NODE = "nodejs:20"
#: Per kind: an action that adds one to ``n``.
ADD_ONE = {
    PY: "def main(p):\n    return {'n': p.get('n', 0) + 1}",
    NODE: "function main(p) { return {n: (p.n || 0) + 1} }",
}


async def run_once(container: Any, n: int) -> Any:
    """One /run of ADD_ONE; returns the decoded result (its logs are drained too)."""
    answer = await container.run({"value": {"n": n}}, timeout=10)
    await container.logs(10_000, 5)
    return json.loads(answer.body)


def process_state(pid: int) -> str:
    """The one-letter state of ``pid`` from /proc (``D`` or ``T`` when frozen/stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]
