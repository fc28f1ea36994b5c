"""Which kinds this host can run, and with what: the manifest checked against the host.

:func:`load_manifest` reads the shipped runtimes manifest and merges the operator's file
(``SQUALL_RUNTIMES_MANIFEST``) over it. :func:`detect` then finds each kind's interpreter
and its library set:

- a kind's interpreter is the first of its ``squall.executable`` candidates that exists
  (a path, with ``{cache}`` the runtimes cache and ``{python}`` the interpreter running
  Squall; or a bare name looked up on ``PATH``);
- its version must match the kind's label (``nodejs:18`` runs on Node.js 18.x,
  ``python:3.11`` on CPython 3.11.x): a mismatch is a :class:`~squall.errors.ConfigError`
  that stops start-up, since actions written for one version would silently run on
  another;
- a kind none of whose candidates exists is not offered: it is left out of the manifest
  ``GET /`` lists and kinds are checked against, and :attr:`Runtimes.missing` says why
  (logged once at start-up);
- a default kind that is not offered leaves its family's newest offered kind as the
  default in its place (with its stem cells), and says so at start-up: ``python:default``
  keeps working on a host where ``squall runtimes install`` could not install
  ``python:3.13``, on ``python:3.11``;
- a library directory that is absent (``squall runtimes install`` not run) leaves the
  kind without libraries, and is logged too.

Probing runs each interpreter once per process and path (its answer is cached): the
kinds' interpreters are checked at start-up, never on the request path.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from squall.config import Settings
from squall.entities.manifest import Manifest, RuntimeKind, shipped_manifest_text
from squall.errors import ConfigError
from squall.runtimes import interpreter as runs_on

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 20.0
#: What each interpreter prints: its version, then the path of the binary really running
#: (a version manager's shim on PATH execs the real one, which is what a sandbox binds).
_PROBES = {
    "nodejs": ["-p", "process.versions.node + '\\n' + process.execPath"],
    "python": [
        "-I",
        "-S",
        "-c",
        "import sys; print('%d.%d.%d' % sys.version_info[:3]); print(sys.executable)",
    ],
}


def default_cache() -> Path:
    """Where ``squall runtimes install`` puts Node.js builds and library sets by default:
    ``$XDG_CACHE_HOME/squall/runtimes``, else ``~/.cache/squall/runtimes``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "squall" / "runtimes"


def load_manifest(override: str | Path | None = None) -> Manifest:
    """The shipped manifest, with the kinds of the operator's file ``override`` (same
    shape) replacing same-named ones and added; ConfigError when a file is invalid."""
    try:
        manifest = Manifest.from_json(json.loads(shipped_manifest_text()))
    except ValueError as ex:  # a broken install, not an operator's mistake
        raise ConfigError(f"the shipped runtimes manifest is invalid: {ex}") from ex
    if override:
        try:
            extra = Manifest.from_json(json.loads(Path(override).read_text()))
            manifest = manifest.merged(extra)
        except (OSError, ValueError) as ex:
            raise ConfigError(f"runtimes manifest {override}: {ex}") from ex
    return manifest


@dataclass(frozen=True)
class Interpreter:
    """What runs one kind: the resolved ``executable``, its ``version``, and the kind's
    library directory (None when it has none or it is not installed)."""

    kind: str
    executable: str
    version: str
    libraries: Path | None = None


@dataclass(frozen=True)
class Runtimes:
    """The kinds this host offers (``manifest``), the interpreter of each, why the
    others are not offered (``missing``: kind → reason), and which offered kind is the
    default in place of a default kind that is missing (``stand_ins``: missing → stand-in,
    see :meth:`~squall.entities.manifest.Manifest.only`)."""

    manifest: Manifest
    interpreters: Mapping[str, Interpreter]
    missing: Mapping[str, str] = field(default_factory=dict)
    stand_ins: Mapping[str, str] = field(default_factory=dict)

    def get(self, kind: str) -> Interpreter | None:
        """The interpreter of ``kind``; ``blackbox`` actions run as ``native`` ones."""
        return self.interpreters.get("native" if kind == "blackbox" else kind)

    def log_summary(self) -> None:
        for kind, found in self.interpreters.items():
            libraries = found.libraries or "no libraries"
            log.info("kind %s: %s (%s), %s", kind, found.executable, found.version, libraries)
        for kind, reason in self.missing.items():
            log.warning("kind %s is not offered: %s", kind, reason)
        for kind, stand_in in self.stand_ins.items():
            log.warning("%s", stand_in_message(kind, stand_in))


def stand_in_message(missing: str, stand_in: str) -> str:
    """What start-up and ``squall runtimes list`` say when the default kind ``missing``
    cannot run here and ``stand_in`` is the default instead."""
    family = missing.partition(":")[0]
    return (
        f"the default kind {missing} is not offered here, so {family}:default is "
        f"{stand_in} (run: squall runtimes install, then restart)"
    )


def template_values(cache: Path) -> dict[str, str]:
    """The values of the manifest's path templates."""
    return {"cache": str(cache), "python": sys.executable}


def detect(manifest: Manifest, cache: Path | None = None) -> Runtimes:
    """Check every kind of ``manifest`` against this host (see the module docstring)."""
    values = template_values(cache or default_cache())
    found: dict[str, Interpreter] = {}
    missing: dict[str, str] = {}
    for kind in manifest.kinds:
        executable = _first_existing(kind, values)
        if executable is None:
            tried = ", ".join(RuntimeKind.expand(e, values) for e in kind.executables)
            missing[kind.kind] = f"no interpreter found (tried: {tried or 'none listed'})"
            continue
        executable, version = _check_version(kind, executable)
        libraries = None
        if kind.libraries is not None:
            path = Path(RuntimeKind.expand(kind.libraries, values))
            if path.is_dir():
                libraries = path
            else:
                log.warning(
                    "kind %s has no libraries: %s is missing (run: squall runtimes install)",
                    kind.kind,
                    path,
                )
        found[kind.kind] = Interpreter(kind.kind, executable, version, libraries)
    return Runtimes(manifest.only(found), found, missing, manifest.stand_ins(found))


def _first_existing(kind: RuntimeKind, values: Mapping[str, str]) -> str | None:
    for template in kind.executables:
        candidate = RuntimeKind.expand(template, values)
        path = shutil.which(candidate) if os.sep not in candidate else candidate
        if path is not None and os.path.isfile(path) and os.access(path, os.X_OK):
            # Resolved: a venv's python is a symlink, and the sandbox binds the real one.
            return os.path.realpath(path)
    return None


def _check_version(kind: RuntimeKind, executable: str) -> tuple[str, str]:
    """The binary really running and its version; ConfigError when the version does not
    match the kind's label."""
    language = runs_on(kind.family) if kind.family in ("nodejs", "python", "native") else ""
    probe = _PROBES.get(language)
    if probe is None:
        return executable, ""
    stat = os.stat(executable)
    answer = _version(executable, tuple(probe), stat.st_mtime_ns, stat.st_ino)
    if answer is None:
        raise ConfigError(f"kind {kind.kind}: {executable} did not report its version")
    version, real = answer
    label = kind.version
    if label and version != label and not version.startswith(label + "."):
        raise ConfigError(
            f"kind {kind.kind} needs {language} {label}, but {executable} is {version}: "
            "point the kind at a matching interpreter (SQUALL_RUNTIMES_MANIFEST), or run "
            "squall runtimes install"
        )
    return real, version


def for_settings(settings: Settings) -> Runtimes:
    """The kinds offered with the operator's manifest (``runtimes_manifest``) and runtimes
    cache (``runtimes_cache``, default :func:`default_cache`) of ``settings``."""
    cache = Path(settings.runtimes_cache) if settings.runtimes_cache else default_cache()
    return detect(load_manifest(settings.runtimes_manifest or None), cache)


@functools.lru_cache(maxsize=64)
def _version(
    executable: str, probe: tuple[str, ...], mtime_ns: int, inode: int
) -> tuple[str, str] | None:
    """Run ``executable probe...`` once per file version: (version, resolved binary)."""
    try:
        done = subprocess.run(
            [executable, *probe],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.decode(errors="replace").split()
    if done.returncode != 0 or len(lines) != 2:
        return None
    return lines[0], os.path.realpath(lines[1])


def probe_python(executable: str) -> str | None:
    """The version of the Python ``executable`` (``3.11.7``), None if it does not run."""
    try:
        stat = os.stat(executable)
    except OSError:
        return None
    answer = _version(executable, tuple(_PROBES["python"]), stat.st_mtime_ns, stat.st_ino)
    return answer[0] if answer is not None else None


def cached_bytecode(executable: str, version: str, script: Path) -> bool:
    """Make sure ``script`` has fresh bytecode for the Python ``executable`` (of
    ``version``, ``3.11.7``) in its ``__pycache__``, compiling it with that interpreter
    when it is missing or stale; True when it is there. Blocking (one interpreter start
    when it compiles): call at start-up, never on the request path.

    Why: a script run as ``python proxy.py`` is compiled at every start (3-4 ms of a true
    cold start for the CPython proxy); imported as a module, it is read from its cached
    bytecode, which the interpreter checks against the source's size and mtime — a stale
    file is never run. False when the directory is not writable (an installed package
    whose bytecode was not compiled): the interpreter then compiles it at each start, as
    before."""
    major, _, rest = version.partition(".")
    minor = rest.partition(".")[0]
    if not (major.isdigit() and minor.isdigit()):
        return False
    cached = script.parent / "__pycache__" / f"{script.stem}.cpython-{major}{minor}.pyc"
    if _fresh(cached, script):
        return True
    compile_it = "import py_compile, sys; py_compile.compile(sys.argv[1], doraise=True)"
    try:
        done = subprocess.run(
            [executable, "-I", "-S", "-c", compile_it, str(script)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as ex:
        log.info("cannot compile %s with %s: %s", script, executable, ex)
        return False
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
        log.info("cannot compile %s with %s: %s", script, executable, "".join(reason))
        return False
    return _fresh(cached, script)


def _fresh(cached: Path, script: Path) -> bool:
    """Whether ``cached`` holds bytecode of ``script`` as it is now (the header's source
    mtime and size, as the interpreter checks them; PEP 552's timestamp form)."""
    try:
        with open(cached, "rb") as file:
            header = file.read(16)
        source = script.stat()
    except OSError:
        return False
    if len(header) < 16 or int.from_bytes(header[4:8], "little") != 0:
        return False
    mtime = int.from_bytes(header[8:12], "little")
    size = int.from_bytes(header[12:16], "little")
    return mtime == int(source.st_mtime) & 0xFFFFFFFF and size == source.st_size & 0xFFFFFFFF
