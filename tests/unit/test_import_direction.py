"""The import direction of docs/architecture.md, held over every module of ``squall/``.

The rules are read from the doc's table ("Layout and import direction"), so the doc and
this test cannot drift apart; each module's imports are found with ``ast`` (module level,
inside functions and under ``TYPE_CHECKING`` alike) and each one must be allowed by the
row of the importing module's package.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "squall"
DOC = ROOT / "docs" / "architecture.md"
SECTION = "## Layout and import direction"


@dataclass(frozen=True)
class Rule:
    """What one package may import: ``layers``, and of ``seams_only`` ones only seams."""

    layers: frozenset[str]
    seams_only: frozenset[str]


@dataclass(frozen=True)
class Rules:
    by_layer: dict[str, Rule]
    seams: frozenset[str]  # modules, e.g. "squall.store.contracts"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "squall.controller.app"
    line: int
    target: str  # what it imports of ours, e.g. "squall.store.contracts"


def layer_of(module: str) -> str:
    """``squall.controller.routes.web`` → ``controller``; ``squall`` → ``squall``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def parse_rules(doc: str, layers: set[str]) -> Rules:
    section = doc.split(SECTION, 1)[1].split("\n## ", 1)[0]
    by_layer: dict[str, Rule] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue  # prose, the header or its separator
        left, right = cells
        if right.startswith("none"):
            rule = Rule(frozenset(), frozenset())
        elif right.startswith("all"):
            excluded = set(re.findall(r"`([\w.]+)`", right))
            rule = Rule(frozenset(layers - excluded), frozenset())
        else:
            named = re.findall(r"`([\w.]+)`(\s*\(seams\))?", right)
            rule = Rule(
                frozenset(name for name, _ in named),
                frozenset(name for name, seams in named if seams),
            )
        for package in re.findall(r"`([\w.]+)`", left):
            by_layer[package] = rule
    seams_text = re.search(r'"\(seams\)":(.*?)never', section, re.DOTALL)
    assert seams_text is not None, "the doc names no seams"
    seams = frozenset(f"squall.{m}" for m in re.findall(r"`([\w.]+)`", seams_text.group(1)))
    return Rules(by_layer, seams)


def imports_of(module: str, source: str, known: set[str]) -> Iterator[Import]:
    """Every import of ours in ``source`` (the text of ``module``); ``known`` are the
    modules that exist, so that ``from squall.store import keys`` counts as the module
    ``squall.store.keys``, not the package."""
    package = module if module in known and _is_package(module) else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = []
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.append((node.lineno, full if full in known else base))
        else:
            continue
        for line, target in targets:
            if target == "squall" or target.startswith("squall."):
                yield Import(module, line, target)


def _is_package(module: str) -> bool:
    return (ROOT.joinpath(*module.split(".")) / "__init__.py").exists()


def violations(found: list[Import], rules: Rules) -> list[str]:
    wrong = []
    for imp in found:
        source, target = layer_of(imp.module), layer_of(imp.target)
        if source == target:
            continue
        rule = rules.by_layer[source]
        if target not in rule.layers:
            wrong.append(f"{imp.module}:{imp.line} imports {imp.target} ({source} → {target})")
        elif target in rule.seams_only and imp.target not in rules.seams:
            wrong.append(f"{imp.module}:{imp.line} imports {imp.target}, not a seam of {target}")
    return wrong


def all_imports() -> list[Import]:
    found = modules()
    known = set(found)
    return [
        imp for name, path in found.items() for imp in imports_of(name, path.read_text(), known)
    ]


def doc_rules() -> Rules:
    return parse_rules(DOC.read_text(), {layer_of(m) for m in modules()})


def test_the_doc_places_every_package() -> None:
    # Given the packages and top-level modules of squall/
    layers = {layer_of(m) for m in modules()}
    # When the doc's table is read / Then each has a row, and the rows name nothing else
    rules = doc_rules()
    assert layers == set(rules.by_layer), "docs/architecture.md's table and squall/ differ"
    for rule in rules.by_layer.values():
        assert rule.layers <= layers and rule.seams_only <= rule.layers
    # And every seam it names exists
    assert rules.seams and rules.seams <= set(modules())


def test_imports_go_the_way_the_doc_says() -> None:
    # Given every import of ours in squall/
    found = all_imports()
    # Then the walk saw the wiring (a sanity check that it reads imports at all)
    edges = {(layer_of(i.module), layer_of(i.target)) for i in found}
    assert {("system", "controller"), ("controller", "store"), ("cli", "system")} <= edges
    # And the doc's table allows each one
    assert violations(found, doc_rules()) == []


def test_a_provider_imported_by_the_controller_is_refused() -> None:
    # Given the doc's rules and modules that import what their row does not allow
    rules = doc_rules()
    known = set(modules())
    source = (
        "from squall.store.contracts import Store\n"  # a seam: allowed
        "from squall.store.sqlite import SqliteStore\n"  # a provider
        "def later():\n"
        "    from squall.invoker.service import Invoker\n"  # another part, lazily
    )
    found = list(imports_of("squall.controller.example", source, known))
    found += list(imports_of("squall.entities.example", "from ..store import keys\n", known))
    # When they are checked / Then each import the table refuses is named, with its line
    assert violations(found, rules) == [
        "squall.controller.example:2 imports squall.store.sqlite, not a seam of store",
        "squall.controller.example:4 imports squall.invoker.service (controller → invoker)",
        "squall.entities.example:1 imports squall.store.keys (entities → store)",
    ]
