"""A ``debian`` item of the runtimes manifest: an interpreter made of the Debian packages of
another suite, relocated into one directory of the runtimes cache.

Why: a kind may need an interpreter the host's own suite does not ship — ``python:3.13``
on a Debian 12 host (Debian 13 ships CPython 3.13). Its lock file (``python/python-3.13/
packages.txt`` beside the manifest) names the suite, the packages, and a command that
checks the result::

    suite trixie
    check usr/bin/python3.13 -I -c "import ssl"
    python3.13-minimal
    ...

What :func:`extract` does, into a fresh directory (``runtimes._install`` moves it into
place once complete, and only then):

1. Fetches apt's index of that suite with a private apt state (lists and cache
   directories of its own: the host's apt state and sources are untouched), from the
   archive the host's own Debian sources use, and of its security updates
   (``<suite>-security``) from the security archive they use, trusted through the host's
   keyrings (apt checks each suite's signed Release file, then each package's hash).
2. ``apt-get download`` of the packages: the newest version of each in the two (the
   versions are written to ``debian-packages.txt`` in the directory). ``squall runtimes
   install --refresh`` fetches them again (security updates since the last install).
3. ``dpkg-deb -x`` of each: no maintainer script runs, nothing is registered with the
   host's dpkg.
4. Relocates the tree: the suite's C library is newer than the host's, so every program
   gets the extracted dynamic loader as its ELF interpreter and every program and shared
   library the extracted library directory as its run path (``patchelf``), both as
   absolute paths of the *final* directory. The interpreter thus runs on its own glibc;
   the libraries the packages do not bring come from the host (older ones run on a newer
   glibc). Inside a sandbox the whole directory is bound read-only (an interpreter's
   prefix, ``squall.sandbox.bwrap.interpreter_prefix``), so the paths hold there too.
   (:mod:`squall.sandbox.relocation`, which a copy elsewhere uses too: python:3.13's
   runtime image, Squall's own image.)
5. Runs the check through the extracted loader (the final paths do not exist yet).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import click

from squall.errors import ContainerError
from squall.sandbox.relocation import loader_of, relocate

#: The keyring a Debian host trusts its archive with (package debian-archive-keyring).
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SOURCES_LIST = Path("/etc/apt/sources.list")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
OS_RELEASE = Path("/etc/os-release")
#: A one-line ``deb [options] URI suite components`` source.
_ONE_LINE = re.compile(r"^\s*deb\s+(?P<options>\[[^\]]*\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)")


class Lock:
    """A parsed ``packages.txt``: ``suite``, the ``check`` command, the ``packages``."""

    def __init__(self, path: Path) -> None:
        self.suite = ""
        self.check: list[str] = []
        self.packages: list[str] = []
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip() if not line.startswith("check ") else line
            if not line:
                continue
            word, _, rest = line.partition(" ")
            if word == "suite":
                self.suite = rest.strip()
            elif word == "check":
                self.check = shlex.split(rest)
            else:
                self.packages.append(line)
        if not self.suite or not self.packages or not self.check:
            raise click.ClickException(f"{path}: needs a 'suite', a 'check' and packages")


def host_archive() -> tuple[str, str]:
    """(URI, keyring) of the Debian archive the host's apt sources use for its own suite
    (``/etc/os-release``'s ``VERSION_CODENAME``), in deb822 ``.sources`` files or the
    one-line ``sources.list``; ClickException when there is none (not a Debian host)."""
    codename = ""
    if OS_RELEASE.is_file():
        for line in OS_RELEASE.read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                codename = line.partition("=")[2].strip().strip('"')
    for uri, suites, keyring in _sources():
        if codename and codename in suites:
            return uri, keyring or KEYRING
    raise click.ClickException(
        "no Debian archive in the host's apt sources (/etc/apt): the Debian packages of "
        "this kind can only be installed on a Debian host"
    )


def host_security_archive() -> tuple[str, str] | None:
    """(URI, keyring) of the Debian security archive the host's apt sources use (the one
    serving its ``<codename>-security`` suite); None when the host has none."""
    for uri, suites, keyring in _sources():
        if any(s.endswith("-security") for s in suites):
            return uri, keyring or KEYRING
    return None


def _sources() -> list[tuple[str, list[str], str]]:
    """(URI, suites, Signed-By keyring or "") of every binary ``deb`` source."""
    found: list[tuple[str, list[str], str]] = []
    for path in sorted(SOURCES_DIR.glob("*.sources")) if SOURCES_DIR.is_dir() else []:
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line and not line.startswith(("#", " ")) and ":" in line:
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("uris"):
                keyring = fields.get("signed-by", "")
                keyring = keyring if keyring.startswith("/") else ""
                uri = fields["uris"].split()[0]
                found.append((uri, fields.get("suites", "").split(), keyring))
    lists = [SOURCES_LIST] + (sorted(SOURCES_DIR.glob("*.list")) if SOURCES_DIR.is_dir() else [])
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            match = _ONE_LINE.match(line.split("#", 1)[0])
            if match is not None:
                signed = re.search(r"signed-by=([^\s\]]+)", match["options"] or "")
                found.append((match["uri"], [match["suite"]], signed[1] if signed else ""))
    return found


def extract(lock: Path, fresh: Path, final: Path) -> None:
    """Install ``lock``'s packages into ``fresh``, relocated for ``final`` (see above)."""
    wanted = Lock(lock)
    lines = [_source_line(*host_archive(), wanted.suite)]
    security = host_security_archive()
    if security is not None:  # the suite's security updates, as a Debian host gets them
        lines.append(_source_line(*security, f"{wanted.suite}-security"))
    with tempfile.TemporaryDirectory(prefix="squall-apt-") as state:
        apt = _apt_options(Path(state), lines)
        debs = Path(state) / "debs"
        debs.mkdir()
        _run(
            ["apt-get", *apt, "update", "--error-on=any"],
            Path(state),
            f"apt's index of Debian {wanted.suite}",
        )
        _run(["apt-get", *apt, "download", *wanted.packages], debs, "the Debian packages")
        versions = []
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(fresh)], debs, f"unpacking {deb.name}")
            versions.append(deb.name)
    (fresh / "debian-packages.txt").write_text("\n".join(versions) + "\n")
    try:
        loader, libraries = loader_of(fresh)
        relocate(fresh, final, loader, libraries)
    except ContainerError as ex:
        raise click.ClickException(ex.message) from ex
    check = [str(fresh / loader), "--library-path", str(fresh / libraries)]
    check += [str(fresh / wanted.check[0]), *wanted.check[1:]]
    _run(check, fresh, "the check of the extracted interpreter")


def _source_line(uri: str, keyring: str, suite: str) -> str:
    return f"deb [signed-by={keyring}] {uri} {suite} main\n"


def _apt_options(state: Path, lines: list[str]) -> list[str]:
    """apt options for a private state under ``state`` with the sources ``lines`` (apt
    takes the highest version of a package any of them has: a security update)."""
    (state / "lists" / "partial").mkdir(parents=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True)
    sources = state / "sources.list"
    sources.write_text("".join(lines))
    return [
        "-q",
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={state / 'lists'}",
        "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "APT::Sandbox::User=root",  # the private directories belong to us
        "-o", "Acquire::Retries=2",
    ]  # fmt: skip


def _run(command: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    except OSError as ex:
        raise click.ClickException(f"{what}: cannot run {command[0]}: {ex}") from ex
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        hint = " (is the Debian archive reachable?)" if command[0] == "apt-get" else ""
        raise click.ClickException(f"{what} failed{hint}: {' '.join(said)}")
