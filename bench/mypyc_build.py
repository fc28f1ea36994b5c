"""Compile the warm invoke path's modules with mypyc, in place, to measure them (issue 12).

    .venv/bin/python bench/mypyc_build.py [--tree DIR] [--skip MODULE.py ...] [--clean]

Builds C extensions of ``MODULES`` (``--skip`` leaves some out) next to their sources in
``--tree`` (default: this tree) with the mypyc of the venv (one group: a
``<hash>__mypyc`` library at the tree's root and one small extension per module), then
checks in a child process that each module is imported from its extension. The tree so
built is then measured against a pure one (``git archive`` of the same commit) with
``bus_hops.py --other``, ``cpu_split.py --before`` or ``invoke_ab.py --before``; figures
in bench/README.md, "mypyc_build.py".
``--clean`` removes the extensions again: Python imports an extension before a ``.py`` of
the same name, so a stale one would shadow an edited source.

Compiling needs one edit that this script makes only for the time of the build: the
invoker (``invoker/service.py``) is ``Invoker(Intake, Pings)``, and a compiled class may
have only one compiled base, so it stays interpreted; an interpreted class may subclass
a compiled one only if that allows it, so ``Completing``, ``Activating`` and ``Intake``
get ``@mypyc_attr(allow_interpreted_subclasses=True)`` while mypyc reads them, and the
sources are restored afterwards (the decorator changes nothing when interpreted).
``EXCLUDED`` lists the warm-path modules left out and why.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The warm invoke path's modules (docs/architecture.md "One invocation", and the modules
# with the most samples in py-spy profiles of the server at c=50) that mypyc accepts.
MODULES = (
    "squall/controller/hotcycle.py",
    "squall/controller/http.py",
    "squall/controller/activator.py",
    "squall/controller/auth.py",
    "squall/controller/throttle.py",
    "squall/controller/entitlement.py",
    "squall/controller/balancer.py",
    "squall/controller/waiters.py",
    "squall/bus/memory.py",
    "squall/bus/push.py",
    "squall/bus/counters.py",
    "squall/invoker/intake.py",
    "squall/invoker/activate.py",
    "squall/invoker/pool.py",
    "squall/invoker/poolbooks.py",
    "squall/invoker/groups.py",
    "squall/invoker/completion.py",
    "squall/invoker/outcomes.py",
    "squall/invoker/container.py",
    "squall/invoker/provisioning.py",
    "squall/invoker/loopload.py",
    "squall/sandbox/http.py",
    "squall/sandbox/logs.py",
    "squall/sandbox/container.py",
    "squall/store/sqlite_activations.py",
    "squall/store/sqlite_schema.py",
    "squall/store/records.py",
    "squall/metrics/invoker.py",
)

EXCLUDED = {
    "squall/controller/hotroutes.py": "an async generator: mypyc says 'unimplemented'",
    "squall/controller/routes/actions.py": (
        "Starlette takes a compiled endpoint for an ASGI app (it is not a Python function):"
        " every route of the module answers 500"
    ),
    "squall/controller/catalog.py": (
        "mypyc's type check rejects EntityCache.get/put (returning Any as E), which"
        " mypy --strict accepts"
    ),
    "squall/cli/coalescing.py": (
        "serving.py's ServedProtocol subclasses both HotRouteProtocol and its protocol:"
        " an interpreted class cannot inherit from a compiled one"
    ),
    "squall/store/sqlite_checkpoint.py": (
        "its attribute _thread becomes the C field __thread, a gcc keyword: the C does"
        " not compile (a mypyc bug)"
    ),
    "squall/invoker/service.py": (
        "Invoker(Intake, Pings): mypyc allows one compiled base (others must be traits)"
    ),
}

# Classes subclassed by the interpreted Invoker, directly or through each other.
SUBCLASSED = {
    "squall/invoker/completion.py": "class Completing:",
    "squall/invoker/activate.py": "class Activating(Completing):",
    "squall/invoker/intake.py": "class Intake(Activating):",
}
FUTURE = "from __future__ import annotations\n"


def _allow_interpreted_subclasses(tree: Path) -> dict[Path, str]:
    """Add the decorator to ``SUBCLASSED``; the original texts, to restore."""
    originals = {}
    for name, line in SUBCLASSED.items():
        path = tree / name
        text = path.read_text()
        if text.count(FUTURE) != 1 or text.count(f"\n{line}\n") != 1:
            raise SystemExit(f"{name}: '{line}' or the __future__ import is not found once")
        originals[path] = text
        text = text.replace(FUTURE, FUTURE + "from mypy_extensions import mypyc_attr\n", 1)
        text = text.replace(
            f"\n{line}\n", f"\n@mypyc_attr(allow_interpreted_subclasses=True)\n{line}\n", 1
        )
        path.write_text(text)
    return originals


def _interpreted_subclasses(tree: Path, modules: list[str]) -> list[str]:
    """Classes of interpreted modules whose base is imported from a compiled one: such a
    class fails when it is instantiated ("interpreted classes cannot inherit from
    compiled"), which importing alone does not show. Bases imported by name only."""
    compiled: dict[str, set[str]] = {}
    for name in modules:
        body = ast.parse((tree / name).read_text()).body
        dotted = name.removesuffix(".py").replace("/", ".")
        compiled[dotted] = {node.name for node in body if isinstance(node, ast.ClassDef)}
    allowed = set(SUBCLASSED.values()) if "squall/invoker/intake.py" in modules else set()
    allowed_names = {line.split()[1].split("(")[0].rstrip(":") for line in allowed}
    found = []
    for path in sorted((tree / "squall").rglob("*.py")):
        name = str(path.relative_to(tree))
        if name in modules or name.startswith("squall/runtimes/"):
            continue
        tree_ = ast.parse(path.read_text())
        imported: dict[str, str] = {
            alias.asname or alias.name: node.module
            for node in ast.walk(tree_)
            if isinstance(node, ast.ImportFrom) and node.module in compiled
            for alias in node.names
        }
        for node in ast.walk(tree_):
            if not isinstance(node, ast.ClassDef):
                continue
            for base in node.bases:
                if not isinstance(base, ast.Name) or base.id in allowed_names:
                    continue
                module = imported.get(base.id)
                if module is not None and base.id in compiled[module]:
                    found.append(f"{name}: {node.name}({base.id}) from {module}")
    return found


def extensions(tree: Path) -> list[Path]:
    """The extensions a build leaves in ``tree`` (of any of ``MODULES``)."""
    found = sorted(tree.glob("*__mypyc.cpython-*.so"))
    for name in MODULES:
        found += sorted((tree / name).parent.glob(f"{Path(name).stem}.cpython-*.so"))
    return found


def clean(tree: Path) -> None:
    for path in extensions(tree):
        path.unlink()
        print(f"removed {path.relative_to(tree)}")


def build(tree: Path, modules: list[str]) -> None:
    blocked = _interpreted_subclasses(tree, modules)
    if blocked:
        raise SystemExit("interpreted subclasses of compiled classes:\n" + "\n".join(blocked))
    clean(tree)
    # Only the classes compiled need the decorator (the invoker subclasses Intake).
    originals = _allow_interpreted_subclasses(tree) if "squall/invoker/intake.py" in modules else {}
    started = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "mypyc", *modules], cwd=tree, check=True)
    finally:
        for path, text in originals.items():
            path.write_text(text)
    took = time.monotonic() - started
    names = [name.removesuffix(".py").replace("/", ".") for name in modules]
    check = (
        "import importlib, sys\nfor n in sys.argv[1:]: print(importlib.import_module(n).__file__)"
    )
    files = subprocess.run(
        [sys.executable, "-c", check, *names], cwd=tree, capture_output=True, text=True,
        check=True,
    ).stdout.split()  # fmt: skip
    pure = [f for f in files if not f.endswith(".so")]
    if pure:
        raise SystemExit(f"imported from source, not compiled: {pure}")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"{len(modules)} modules compiled in {took:.0f} s (load {' '.join(load)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=REPO, help="the source tree to build in")
    parser.add_argument("--skip", nargs="+", default=[], help="modules of MODULES to leave out")
    parser.add_argument("--clean", action="store_true", help="remove the extensions only")
    args = parser.parse_args()
    tree = args.tree.resolve()
    unknown = set(args.skip) - set(MODULES)
    if unknown:
        raise SystemExit(f"not in MODULES: {sorted(unknown)}")
    if args.clean:
        clean(tree)
    else:
        build(tree, [name for name in MODULES if name not in args.skip])


if __name__ == "__main__":
    main()
