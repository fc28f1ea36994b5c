"""The runtimes manifest: which kinds exist, and how each runs here.

The manifest has the shape of OpenWhisk's ``ansible/files/runtimes.json`` (families of
kinds with ``default``, ``deprecated``, ``image``, ``stemCells``), each kind extended with a
``squall`` object: the candidate interpreters that run it, its pinned library set, and
what installs them. It is what ``GET /`` advertises under ``runtimes`` and what
``exec.kind`` is checked against (:mod:`squall.entities.kinds`); ``family:default``
resolves to the family's default kind. Parsing is pure: reading the files and checking
the interpreters is done at start-up (:mod:`squall.sandbox.interpreters`), which installs
the manifest of the kinds this host offers with :func:`use_manifest`. Until then the
shipped manifest (package data beside the runtime proxies) is in use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Literal

from squall.errors import BadRequest

#: The shipped manifest, a data file of the package that holds the runtime proxies.
MANIFEST_PACKAGE, MANIFEST_FILE = "squall.runtimes", "runtimes.json"
INSTALL_TOOLS: tuple[Literal["npm", "pip", "debian"], ...] = ("npm", "pip", "debian")
_MEMORY = re.compile(r"^\s*(\d+)\s*(MB|M)?\s*$", re.IGNORECASE)
#: A duration as OpenWhisk reads a reactive stem cell's ``ttl`` (Scala's ``Duration(s)``:
#: a number, then a unit's label; whitespace ignored): label → seconds. Matched without
#: regard to case, as Squall always did (Scala is case-sensitive).
_TTL = re.compile(r"^([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)([a-zµ]+)$", re.IGNORECASE)
_TTL_UNITS = {
    label: seconds
    for labels, seconds in (
        ("d day", 86400.0),
        ("h hr hour", 3600.0),
        ("m min minute", 60.0),
        ("s sec second", 1.0),
        ("ms milli millisecond", 1e-3),
        ("µs micro microsecond", 1e-6),
        ("ns nano nanosecond", 1e-9),
    )
    # Scala's expandLabels: the first label as is, the others also with an "s".
    for i, word in enumerate(labels.split())
    for label in ((word,) if i == 0 else (word, word + "s"))
}


@dataclass(frozen=True, slots=True)
class StemCell:
    """Keep ``count`` prewarmed containers of a kind with ``memory_mb`` each; with
    ``reactive`` (OpenWhisk's option of the same name: ``maxCount``, ``ttl``), up to
    ``max_count`` of a burst's shape for ``ttl_s`` after a burst (invoker/prewarm.py)."""

    count: int
    memory_mb: int
    max_count: int = 0
    ttl_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Install:
    """One thing ``squall runtimes install`` puts in place: ``tool`` (``npm``: ``npm ci``
    of the ``package.json`` and lock in directory ``source``; ``pip``: the pinned
    requirements file ``source``; ``debian``: the Debian packages listed in ``source``,
    see :mod:`squall.cli.debian`), ``source`` relative to the manifest's directory,
    installed into ``into`` (a path template, see :meth:`RuntimeKind.expand`)."""

    tool: Literal["npm", "pip", "debian"]
    source: str
    into: str


@dataclass(frozen=True, slots=True)
class RuntimeKind:
    """One kind of the manifest.

    ``image`` is OpenWhisk's resolved image name (``prefix/name:tag``), shown by ``GET /``
    (Squall's process sandbox runs ``executables`` instead). ``executables`` are path
    templates of candidate interpreters, tried in order; ``libraries`` the template of the
    kind's library directory (None: none).
    """

    kind: str
    family: str
    default: bool
    deprecated: bool = False
    image: str = ""
    attached: bool = False
    require_main: bool = False
    stem_cells: tuple[StemCell, ...] = ()
    executables: tuple[str, ...] = ()
    libraries: str | None = None
    installs: tuple[Install, ...] = ()

    @property
    def version(self) -> str:
        """The version in the label (``nodejs:20`` → ``20``; ``""`` for ``native``)."""
        return self.kind.partition(":")[2]

    def to_json(self) -> dict[str, Any]:
        """The kind's entry in ``GET /`` (OpenWhisk's ``Runtimes.toJson``)."""
        return {
            "kind": self.kind,
            "image": self.image,
            "deprecated": self.deprecated,
            "default": self.default,
            "attached": self.attached,
            "requireMain": self.require_main,
        }

    @staticmethod
    def expand(template: str, values: Mapping[str, str]) -> str:
        """``{cache}/node-20`` with ``values={"cache": ...}`` → a path."""
        for key, value in values.items():
            template = template.replace("{" + key + "}", value)
        return template


class Manifest:
    """An ordered set of kinds (at most one default per family) and the trusted images."""

    def __init__(self, kinds: Iterable[RuntimeKind], blackboxes: Iterable[str] = ()) -> None:
        self.kinds = tuple(kinds)
        self.blackboxes = tuple(blackboxes)
        self._by_kind = {k.kind: k for k in self.kinds}
        self._defaults = {k.family: k.kind for k in self.kinds if k.default}

    @classmethod
    def from_json(cls, raw: object) -> Manifest:
        """Parse a manifest in OpenWhisk's shape; ValueError says what is wrong."""
        if not isinstance(raw, dict) or not isinstance(raw.get("runtimes"), dict):
            raise ValueError("a runtimes manifest is an object with a 'runtimes' object")
        kinds: list[RuntimeKind] = []
        for family, entries in raw["runtimes"].items():
            if not isinstance(entries, list):
                raise ValueError(f"runtimes.{family} must be an array of kinds")
            kinds += [_kind(str(family), entry) for entry in entries]
        manifest = cls(kinds, (_image(i) for i in raw.get("blackboxes") or ()))
        manifest._check()
        return manifest

    def _check(self) -> None:
        seen: set[str] = set()
        defaults: dict[str, int] = {}
        for k in self.kinds:
            if k.kind in seen:
                raise ValueError(f"kind {k.kind!r} is listed twice")
            seen.add(k.kind)
            if k.kind.partition(":")[0] != k.family:
                raise ValueError(f"kind {k.kind!r} is not of family {k.family!r}")
            defaults[k.family] = defaults.get(k.family, 0) + int(k.default)
        many = sorted(family for family, count in defaults.items() if count > 1)
        if many:
            raise ValueError(f"more than one default kind in: {', '.join(many)}")

    def merged(self, other: Manifest) -> Manifest:
        """This manifest with ``other``'s kinds replacing same-named ones and added after;
        a family whose default ``other`` names keeps only that default."""
        replaced = {k.kind: k for k in other.kinds}
        new_defaults = {k.family for k in other.kinds if k.default}
        kinds = [replaced.pop(k.kind, k) for k in self.kinds] + list(replaced.values())
        kinds = [
            replace(k, default=False)
            if k.family in new_defaults and k.default and k not in other.kinds
            else k
            for k in kinds
        ]
        merged = Manifest(kinds, dict.fromkeys([*self.blackboxes, *other.blackboxes]))
        merged._check()
        return merged

    def only(self, kinds: Iterable[str]) -> Manifest:
        """The manifest restricted to ``kinds`` (the ones this host can run). A family
        whose default kind is left out gets a stand-in default (:meth:`stand_ins`), which
        takes over the stem cells of the default it replaces when it has none: so
        ``python:default`` still means a kind this host runs."""
        keep = set(kinds)
        replacing = {stand_in: gone for gone, stand_in in self.stand_ins(keep).items()}
        out: list[RuntimeKind] = []
        for k in self.kinds:
            if k.kind not in keep:
                continue
            gone = replacing.get(k.kind)
            if gone is not None:
                cells = k.stem_cells or self._by_kind[gone].stem_cells
                k = replace(k, default=True, stem_cells=cells)
            out.append(k)
        return Manifest(out, self.blackboxes)

    def stand_ins(self, kinds: Iterable[str]) -> dict[str, str]:
        """Each default kind that is not among ``kinds`` → the kind of its family among
        ``kinds`` that stands in for it: the newest version, preferring ones that are not
        deprecated (a family with none of its kinds left has no stand-in)."""
        keep = set(kinds)
        out: dict[str, str] = {}
        for family, default in self._defaults.items():
            if default in keep:
                continue
            left = [k for k in self.kinds if k.family == family and k.kind in keep]
            if left:
                out[default] = max(left, key=lambda k: (not k.deprecated, _version_key(k))).kind
        return out

    def get(self, kind: str) -> RuntimeKind | None:
        return self._by_kind.get(kind)

    @property
    def native_images(self) -> tuple[str, ...]:
        """The ``blackboxes`` without their tags: the images whose blackbox actions run
        natively (any other image runs on the Docker backend)."""
        return tuple(dict.fromkeys(image.partition(":")[0] for image in self.blackboxes))

    def valid_kinds(self) -> list[str]:
        return [k.kind for k in self.kinds]

    def resolve_kind(self, kind: str) -> str:
        """Map ``nodejs``, ``nodejs:default`` to the default kind; unknown kinds are a 400."""
        family, _, version = kind.partition(":")
        if version in ("", "default") and family in self._defaults:
            return self._defaults[family]
        if kind in self._by_kind or kind == BLACKBOX:
            return kind
        raise BadRequest(
            f"The specified runtime '{kind}' is not supported by this platform. "
            f"Valid values are: {', '.join(repr(k) for k in self.valid_kinds())}."
        )

    def runtimes_json(self) -> dict[str, list[dict[str, Any]]]:
        """The ``runtimes`` object of ``GET /``: family → its kinds, in manifest order."""
        out: dict[str, list[dict[str, Any]]] = {}
        for k in self.kinds:
            out.setdefault(k.family, []).append(k.to_json())
        return out

    def stem_cells(self) -> list[tuple[str, StemCell]]:
        """(kind, stem cell) for every stem cell the manifest asks for."""
        return [(k.kind, cell) for k in self.kinds for cell in k.stem_cells]


def _version_key(kind: RuntimeKind) -> tuple[int, ...]:
    """``python:3.13`` → ``(3, 13)``; a label that is not dotted numbers sorts first."""
    parts = kind.version.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else ()


def _image(raw: object) -> str:
    """``{prefix, name, tag}`` (optional ``registry``) → ``[registry/]prefix/name:tag``."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ValueError("an image is an object with at least a 'name'")
    name = "/".join(str(raw[p]) for p in ("registry", "prefix") if raw.get(p)) + "/"
    tag = f":{raw['tag']}" if raw.get("tag") else ""
    return f"{name.lstrip('/')}{raw['name']}{tag}"


def _memory_mb(raw: object) -> int:
    match = _MEMORY.match(str(raw))
    if match is None or int(match[1]) <= 0:
        raise ValueError(f"stem cell memory {raw!r} is not like '256 MB'")
    return int(match[1])


def _stem_cell(kind: str, raw: object) -> StemCell:
    problem = f"{kind}: a stem cell has an 'initialCount' (a count) and a 'memory'"
    if not isinstance(raw, dict):
        raise ValueError(problem)
    count = raw.get("initialCount")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(problem)
    max_count, ttl_s = _reactive(kind, raw.get("reactive"))
    return StemCell(count, _memory_mb(raw.get("memory")), max_count, ttl_s)


def _reactive(kind: str, raw: object) -> tuple[int, float]:
    """A stem cell's ``reactive``: ``{"maxCount": N, "ttl": "60 seconds"}`` → (N, 60.0);
    absent → (0, 0.0). OpenWhisk's ``minCount``, ``threshold`` and ``increment`` are
    accepted and not used: a burst here is :data:`~squall.sandbox.sparedemand.BURST_CREATES`
    cold starts in flight at once, and the count follows it (sandbox/sparedemand.py)."""
    if raw is None:
        return 0, 0.0
    problem = f"{kind}: 'reactive' has a 'maxCount' (a count) and a 'ttl' like '60 seconds'"
    if not isinstance(raw, dict):
        raise ValueError(problem)
    count = raw.get("maxCount")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(problem)
    return count, _ttl_s(kind, raw.get("ttl"))


def _ttl_s(kind: str, raw: object) -> float:
    """``"60 seconds"``, ``"500 milliseconds"``, ``"1 hour"`` → seconds (the units of
    OpenWhisk's durations: :data:`_TTL_UNITS`)."""
    match = _TTL.match("".join(str(raw).split())) if isinstance(raw, str) else None
    seconds = None if match is None else _TTL_UNITS.get(match[2].lower())
    if match is None or seconds is None:
        raise ValueError(
            f"{kind}: the 'ttl' of 'reactive', {raw!r}, is not a duration like '60 seconds' "
            "(a number and a unit: d, h, min, s, ms, µs, ns, or day, hour, minute, second, "
            "millisecond, microsecond, nanosecond)"
        )
    return float(match[1]) * seconds


def _kind(family: str, raw: object) -> RuntimeKind:
    if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str):
        raise ValueError(f"every kind of runtimes.{family} needs a 'kind' string")
    name = raw["kind"]
    cells = tuple(_stem_cell(name, cell) for cell in raw.get("stemCells") or ())
    ours = raw.get("squall") or {}
    if not isinstance(ours, dict):
        raise ValueError(f"{name}: 'squall' must be an object")
    executables = ours.get("executable") or []
    if isinstance(executables, str):
        executables = [executables]
    installs = []
    problem = f"{name}: an install names 'npm', 'pip' or 'debian', and 'into'"
    for item in ours.get("install") or ():
        if not isinstance(item, dict) or not isinstance(item.get("into"), str):
            raise ValueError(problem)
        tools = [tool for tool in INSTALL_TOOLS if tool in item]
        if len(tools) != 1:
            raise ValueError(problem)
        installs.append(Install(tools[0], str(item[tools[0]]), item["into"]))
    return RuntimeKind(
        kind=name,
        family=family,
        default=bool(raw.get("default", False)),
        deprecated=bool(raw.get("deprecated", False)),
        image=_image(raw["image"]) if raw.get("image") else "",
        attached=raw.get("attached") is not None,
        require_main=bool(raw.get("requireMain", False)),
        stem_cells=cells,
        executables=tuple(str(e) for e in executables),
        libraries=str(ours["libraries"]) if ours.get("libraries") else None,
        installs=tuple(installs),
    )


def shipped_manifest_text() -> str:
    """The text of the manifest shipped with Squall."""
    return resources.files(MANIFEST_PACKAGE).joinpath(MANIFEST_FILE).read_text()


#: OpenWhisk's kind for Docker actions: any image answering the action protocol (run by
#: the invoker's Docker backend), with or without code; the manifest's ``blackboxes`` (its
#: skeleton image) with a zip holding an ``exec`` run natively (``wsk action create
#: --native``), in the process sandbox.
BLACKBOX = "blackbox"
_active: Manifest | None = None


def use_manifest(manifest: Manifest) -> None:
    """Make ``manifest`` the one this process validates kinds against and advertises.

    Called at start-up with the kinds the host offers; one manifest per process (every
    standalone or cluster member built in a process sees the same host).
    """
    global _active
    _active = manifest


def manifest() -> Manifest:
    """The manifest in use (the shipped one until :func:`use_manifest`)."""
    global _active
    if _active is None:
        _active = Manifest.from_json(json.loads(shipped_manifest_text()))
    return _active


def valid_kinds() -> list[str]:
    return manifest().valid_kinds()


def resolve_kind(kind: str) -> str:
    """Map ``nodejs``, ``nodejs:default`` to the default kind; reject unknown kinds (400)."""
    return manifest().resolve_kind(kind)


def runtimes_json() -> dict[str, list[dict[str, Any]]]:
    """The ``runtimes`` object of ``GET /``."""
    return manifest().runtimes_json()


def runtime_deprecated(kind: str) -> str:
    """OpenWhisk's message for a deprecated kind (``Messages.runtimeDeprecated``)."""
    return (
        f"The '{kind}' runtime is no longer supported. You may read and delete but not "
        "update or invoke this action."
    )
