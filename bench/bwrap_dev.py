"""What a sandbox's ``/dev`` costs bubblewrap: its command line running ``/bin/true`` (issue 12).

Usage::

    PYTHONPATH=. .venv/bin/python bench/bwrap_dev.py [--runs 30]

Builds the sandbox's command line (:meth:`squall.sandbox.bwrap.BwrapSandbox.command`, no
extra binds, no ``--block-fd``, a network namespace of its own) with three ``/dev``:

- ``dev``: bubblewrap's ``--dev`` (tmpfs, six device binds each remounted, ``devpts``,
  symlinks), remounted read-only — what every sandbox had before;
- ``bind``: one ``--dev-bind`` of a directory of device nodes made once here
  (:func:`make_devices`: what ``--dev`` binds from the host, on the host's ``/tmp`` file
  system; no ``/dev/pts``, which only a mount inside the sandbox could make — why the
  sandboxes keep ``--dev``, bench/README.md "bwrap_dev.py");
- ``tmpfs``: a plain tmpfs there (no device at all): the floor, for reference.

each in both ways the factory runs bubblewrap: ``root`` (bubblewrap as root) and ``uid``
(as an unprivileged host uid, the default). Runs take turns (every combination once per
round, the order rotated each round). Per run: the wall time from the fork to the reap,
and the CPU time of a cpuacct cgroup the run joins before its exec. Prints the
best and the median per combination and writes ``bench/results/bwrap_dev.json`` with the
1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import stat
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from squall.sandbox.bwrap import BwrapSandbox, find_bwrap, write_etc

UID = 0x7000_0000 + 4343
CPUACCT = Path("/sys/fs/cgroup/cpuacct")
RESULTS = Path(__file__).with_name("results") / "bwrap_dev.json"
#: name: (major, minor) — the character devices bubblewrap's ``--dev`` binds.
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
           "urandom": (1, 9), "tty": (5, 0)}  # fmt: skip
#: The symlinks bubblewrap's ``--dev`` makes.
LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
         "stderr": "/proc/self/fd/2", "core": "/proc/kcore"}  # fmt: skip


def make_devices(directory: Path) -> None:
    """``directory`` as the ``bind`` case's ``/dev`` (root only: ``mknod``)."""
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)  # whatever the umask
    for name, (major, minor) in DEVICES.items():
        os.mknod(directory / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        (directory / name).chmod(0o666)
    for name, target in LINKS.items():
        (directory / name).symlink_to(target)
    (directory / "shm").mkdir(mode=0o755)


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _run(argv: list[str], uid: int | None, group: Path) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run of ``argv`` (as ``uid`` when given), its CPU
    that of cpuacct cgroup ``group``, which it joins before its exec (as a sandbox's
    bubblewrap joins its container's): every process it starts, and the kernel's work
    on their behalf, is counted."""
    null = os.open(os.devnull, os.O_RDWR)
    usage = group / "cpuacct.usage"
    cpu = int(usage.read_text())
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: as the supervisor's child would, then exec
        try:
            (group / "cgroup.procs").write_text("0")
            for target in (0, 1, 3):  # 3: the --info-fd
                os.dup2(null, target)
                os.set_inheritable(target, True)  # null itself may be 3
            if uid is not None:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    wall = time.perf_counter() - start
    os.close(null)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}")
    return wall * 1000, (int(usage.read_text()) - cpu) / 1e6


def _commands(work: Path) -> dict[str, list[str]]:
    bwrap = find_bwrap()
    if bwrap is None:
        raise SystemExit("no bwrap on PATH")
    etc, dev = work / "etc", work / "dev"
    write_etc(etc, None)
    make_devices(dev)
    sandbox = BwrapSandbox(bwrap, etc, network=False)
    argv = sandbox.command(["/bin/true"], binds=[], tmp_bytes=64 << 20, info_fd=3, block_fd=None)
    at = argv.index("--dev")
    ro = argv.index("/dev", argv.index("--remount-ro"))
    without_ro = argv[: ro - 1] + argv[ro + 1 :]  # bubblewrap's remount would add nodev
    made: dict[str, list[str]] = {"dev": argv}
    for name, mount in (("bind", ["--dev-bind", str(dev), "/dev"]), ("tmpfs", ["--tmpfs", "/dev"])):
        made[name] = without_ro[:at] + mount + without_ro[at + 2 :]
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    group = CPUACCT / f"squall-bench-bwrap-dev-{os.getpid()}"
    group.mkdir()
    try:
        samples, load = _measure(args.runs, group)
    finally:
        for _ in range(50):  # the last exits leave the cgroup a moment after the reap
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    _report(args.runs, samples, load)


def _measure(runs: int, group: Path) -> tuple[dict[str, list[tuple[float, float]]], list[float]]:
    with tempfile.TemporaryDirectory(prefix="bwrap-dev-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        commands = _commands(work)
        cases: list[tuple[str, Callable[[], tuple[float, float]]]] = []
        for mode, uid in (("root", None), ("uid", UID)):
            for name, argv in commands.items():
                cases.append((f"{mode} {name}", functools.partial(_run, argv, uid, group)))
        for _, run in cases:  # warm-up: page cache, bubblewrap's pages
            for _ in range(3):
                run()
        load = [_load()]
        samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in cases}
        for round_ in range(runs):
            shift = round_ % len(cases)
            for label, run in cases[shift:] + cases[:shift]:
                samples[label].append(run())
        load.append(_load())
    return samples, load


def _report(runs: int, samples: dict[str, list[tuple[float, float]]], load: list[float]) -> None:
    report: dict[str, object] = {"runs": runs, "load": load, "cases": {}}
    print(f"{'case':<12} {'cpu min':>8} {'cpu p50':>8} {'wall min':>9} {'wall p50':>9}")
    for label, values in samples.items():
        walls, cpus = [w for w, _ in values], [c for _, c in values]
        row = {
            "cpu_min": min(cpus),
            "cpu_p50": statistics.median(cpus),
            "wall_min": min(walls),
            "wall_p50": statistics.median(walls),
        }
        report["cases"][label] = row  # type: ignore[index]
        print(
            f"{label:<12} {row['cpu_min']:8.2f} {row['cpu_p50']:8.2f}"
            f" {row['wall_min']:9.2f} {row['wall_p50']:9.2f}"
        )
    print(f"load {load[0]:.2f} -> {load[1]:.2f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
