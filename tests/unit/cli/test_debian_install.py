"""``debian`` install items (squall/cli/debian.py): the lock file, the host's Debian
archive, and relocating extracted programs onto their own loader and libraries
(squall/sandbox/relocation.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click
import pytest
from _required import unavailable

from squall.cli import debian, runtimes
from squall.sandbox import relocation
from squall.sandbox.interpreters import load_manifest, template_values

SHIPPED_LOCK = (
    Path(__file__).resolve().parents[3] / "squall/runtimes/python/python-3.13/packages.txt"
)


def test_the_shipped_lock_names_a_suite_a_check_and_the_interpreter() -> None:
    lock = debian.Lock(SHIPPED_LOCK)
    assert lock.suite == "trixie"
    assert lock.check[:4] == ["usr/bin/python3.13", "-I", "-S", "-c"]
    assert lock.check[4].startswith("import _json,")  # one argument, quotes removed
    assert {"python3.13-minimal", "libc6", "python3-pip-whl"} <= set(lock.packages)
    assert not any(p.startswith(("#", "suite", "check")) for p in lock.packages)


def test_a_lock_without_a_suite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "packages.txt"
    path.write_text("check usr/bin/true\npython3.13-minimal\n")
    with pytest.raises(click.ClickException, match="needs a 'suite'"):
        debian.Lock(path)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An /etc/apt and /etc/os-release of a Debian 12 host, under ``tmp_path``."""
    etc = tmp_path / "etc"
    (etc / "apt" / "sources.list.d").mkdir(parents=True)
    (etc / "os-release").write_text('PRETTY_NAME="Debian 12"\nVERSION_CODENAME=bookworm\n')
    monkeypatch.setattr(debian, "OS_RELEASE", etc / "os-release")
    monkeypatch.setattr(debian, "SOURCES_LIST", etc / "apt" / "sources.list")
    monkeypatch.setattr(debian, "SOURCES_DIR", etc / "apt" / "sources.list.d")
    return etc / "apt"


def test_the_archive_is_the_one_the_hosts_deb822_sources_use(host: Path) -> None:
    # Given the host's sources: another vendor's, then Debian's with its own keyring
    (host / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/other\nSuites: nodistro\nComponents: main\n\n"
        "Types: deb deb-src\n# a comment\nURIs: http://mirror.invalid/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/mirror.gpg\n"
    )
    # Then the Debian one is used, with its keyring
    assert debian.host_archive() == (
        "http://mirror.invalid/debian",
        "/usr/share/keyrings/mirror.gpg",
    )


def test_the_archive_of_a_one_line_sources_list(host: Path) -> None:
    (host / "sources.list").write_text(
        "# deb http://old.invalid/debian bookworm main\n"
        "deb-src http://src.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm main\n"
    )
    assert debian.host_archive() == ("http://mirror.invalid/debian", "/k.gpg")
    # Without a signed-by option, the Debian archive keyring
    (host / "sources.list").write_text("deb http://mirror.invalid/debian bookworm main\n")
    assert debian.host_archive() == ("http://mirror.invalid/debian", debian.KEYRING)


def test_a_host_without_debian_sources_says_so(host: Path) -> None:
    with pytest.raises(click.ClickException, match="only be installed on a Debian host"):
        debian.host_archive()


def test_relocated_programs_use_the_extracted_loader_and_libraries(tmp_path: Path) -> None:
    if shutil.which("patchelf") is None:
        unavailable("patchelf is not installed: apt-get install patchelf")
    # Given an extracted tree: a program, a library, a loader, and a text file
    root = tmp_path / "fresh"
    (root / "usr" / "bin").mkdir(parents=True)
    libraries = root / "usr" / "lib" / "x86_64-linux-gnu"
    libraries.mkdir(parents=True)
    shutil.copy("/bin/true", root / "usr" / "bin" / "true")
    system_libc = Path(
        subprocess.run(
            ["/bin/sh", "-c", "ldd /bin/true | awk '/libc.so/ {print $3}'"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    shutil.copy(system_libc.resolve(), libraries / "libexample.so.1")
    shutil.copy("/bin/true", libraries / "ld-linux-x86-64.so.2")
    (root / "usr" / "bin" / "script").write_text("#!/bin/sh\n")
    final = tmp_path / "python-3.13"
    loader = Path("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    # When relocated for its final place
    changed = relocation.relocate(root, final, loader, loader.parent)
    # Then the program and the library point at the final loader and library directory
    assert changed == 2

    def patchelf(*args: str) -> str:
        done = subprocess.run(["patchelf", *args], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    program = str(root / "usr" / "bin" / "true")
    assert patchelf("--print-interpreter", program) == str(final / loader)
    assert patchelf("--print-rpath", program) == str(final / loader.parent)
    assert patchelf("--print-rpath", str(libraries / "libexample.so.1")) == str(
        final / loader.parent
    )
    # And the loader itself and files that are not ELF are left alone
    assert (libraries / "ld-linux-x86-64.so.2").read_bytes() == Path("/bin/true").read_bytes()
    assert (root / "usr" / "bin" / "script").read_text() == "#!/bin/sh\n"


def test_an_interpreter_that_cannot_be_had_is_left_out_with_a_message(
    host: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a host without Debian sources, and the python:3.13 kind's Debian item
    kind = next(k for k in load_manifest(None).kinds if k.kind == "python:3.13")
    item = next(i for i in kind.installs if i.tool == "debian")
    into = tmp_path / "cache" / "python-3.13"
    # When the runtimes install reaches it
    runtimes._install(kind, item, into, template_values(tmp_path / "cache"))
    # Then it says why and goes on (the other kinds install without it), leaving nothing
    assert "python:3.13 not installed" in capsys.readouterr().err
    assert not into.exists()
    assert not into.parent.exists() or not list(into.parent.iterdir())


def test_the_suites_security_updates_come_from_the_hosts_security_archive(host: Path) -> None:
    (host / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://security.invalid/debian-security\n"
        "Suites: bookworm-security\nComponents: main\nSigned-By: /s.gpg\n"
    )
    assert debian.host_security_archive() == ("http://security.invalid/debian-security", "/s.gpg")
    (host / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm\nComponents: main\n"
    )
    assert debian.host_security_archive() is None
