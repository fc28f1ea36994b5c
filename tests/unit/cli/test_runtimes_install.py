"""``squall runtimes install``: installs from a lock file once, again only when it changes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from _required import unavailable

from squall.cli import runtimes
from squall.entities.manifest import Install, RuntimeKind


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of lock files standing for squall/runtimes, with one npm package set
    that has no dependencies (so npm needs no registry)."""
    if shutil.which("npm") is None:
        unavailable("npm is not installed")
    root = tmp_path / "sources"
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "package.json").write_text(json.dumps({"name": "tiny", "private": True}))
    subprocess.run(
        ["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"],
        cwd=root / "tiny",
        check=True,
        capture_output=True,
    )
    monkeypatch.setattr(runtimes, "SOURCES", root)
    return root


KIND = RuntimeKind("nodejs:20", "nodejs", True)
ITEM = Install("npm", "tiny", "{cache}/tiny")


def test_an_install_happens_once_until_its_lock_file_changes(sources: Path, tmp_path: Path) -> None:
    into = tmp_path / "cache" / "tiny"
    values = {"cache": str(into.parent)}
    # Given a first install from the lock file
    runtimes._install(KIND, ITEM, into, values)
    assert (into / "package-lock.json").read_bytes() == (
        sources / "tiny" / "package-lock.json"
    ).read_bytes()
    assert (into / runtimes.STAMP).is_file()
    # When it runs again with the lock file unchanged
    (into / "kept").write_text("the same directory")
    runtimes._install(KIND, ITEM, into, values)
    # Then nothing was reinstalled
    assert (into / "kept").is_file()
    # When the package set changes, Then it is installed afresh, in place of the old one
    (sources / "tiny" / "package.json").write_text(
        json.dumps({"name": "tiny", "private": True, "description": "changed"})
    )
    runtimes._install(KIND, ITEM, into, values)
    assert not (into / "kept").exists()
    assert "changed" in (into / "package.json").read_text()
    # And no temporary directory is left beside it
    assert sorted(p.name for p in into.parent.iterdir()) == ["tiny"]


def test_a_failed_install_leaves_the_previous_one_in_place(sources: Path, tmp_path: Path) -> None:
    into = tmp_path / "cache" / "tiny"
    values = {"cache": str(into.parent)}
    runtimes._install(KIND, ITEM, into, values)
    # Given a lock file that no longer matches its package.json (npm ci refuses it)
    (sources / "tiny" / "package.json").write_text(
        json.dumps({"name": "tiny", "private": True, "dependencies": {"left-pad": "1.3.0"}})
    )
    # When installing, Then it fails, and the previous install is untouched
    with pytest.raises(click.ClickException, match="npm ci"):
        runtimes._install(KIND, ITEM, into, values)
    assert "left-pad" not in (into / "package.json").read_text()
    assert sorted(p.name for p in into.parent.iterdir()) == ["tiny"]
