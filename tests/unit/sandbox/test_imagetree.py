"""What makes python:3.13's runtime image out of date (squall/sandbox/imagetree.py): the
interpreter tree's contents, never the bytecode the interpreter caches beside its modules
when it runs on the host, nor the install stamp."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from squall.sandbox import imagetree, relocation
from squall.sandbox.imagetree import tree_digest


def digest_of(root: Path) -> str:
    digest = hashlib.sha256()
    tree_digest(root, digest)
    return digest.hexdigest()


def make_tree(root: Path) -> None:
    library = root / "usr" / "lib" / "python3.13"
    library.mkdir(parents=True)
    (library / "json.py").write_text("import re\n")
    (root / "usr" / "bin").mkdir()
    program = root / "usr" / "bin" / "python3.13"
    program.write_bytes(b"\x7fELF program")
    program.chmod(0o755)
    os.symlink("python3.13", root / "usr" / "bin" / "python3")
    os.symlink("python3.13", root / "usr" / "lib" / "linked")  # a link to a directory name


def test_the_same_tree_gives_the_same_digest_whatever_the_host_cached(tmp_path: Path) -> None:
    # Given two copies of one interpreter tree
    make_tree(tmp_path / "a")
    make_tree(tmp_path / "b")
    before = digest_of(tmp_path / "a")
    assert digest_of(tmp_path / "b") == before
    # When the interpreter ran on the host (bytecode beside its modules) and was stamped
    cache = tmp_path / "a" / "usr" / "lib" / "python3.13" / "__pycache__"
    cache.mkdir()
    (cache / "json.cpython-313.pyc").write_bytes(b"bytecode")
    (tmp_path / "a" / ".squall-installed").write_text("stamp\n")
    # Then its digest is unchanged: the image is not rebuilt for that
    assert digest_of(tmp_path / "a") == before


def test_contents_modes_and_links_change_the_digest(tmp_path: Path) -> None:
    make_tree(tmp_path)
    seen = {digest_of(tmp_path)}
    # A module's contents (a refreshed interpreter: security updates)
    (tmp_path / "usr" / "lib" / "python3.13" / "json.py").write_text("import re, sys\n")
    seen.add(digest_of(tmp_path))
    # A program's mode
    (tmp_path / "usr" / "bin" / "python3.13").chmod(0o700)
    seen.add(digest_of(tmp_path))
    # Where a link points
    link = tmp_path / "usr" / "bin" / "python3"
    link.unlink()
    os.symlink("python3.13-other", link)
    seen.add(digest_of(tmp_path))
    # A file added
    (tmp_path / "usr" / "lib" / "python3.13" / "new.py").write_text("")
    seen.add(digest_of(tmp_path))
    assert len(seen) == 5


class Recording:
    """A digest that keeps what it was fed."""

    def __init__(self) -> None:
        self.fed = b""

    def update(self, data: bytes, /) -> None:
        self.fed += data


def test_the_sources_that_relocate_the_tree_are_inputs_too(tmp_path: Path) -> None:
    # Given an interpreter tree
    make_tree(tmp_path)
    # When its digest is taken
    recording = Recording()
    tree_digest(tmp_path, recording)
    # Then it was fed the code that copies the tree and the relocation that code runs:
    # a change in either rebuilds the image
    assert Path(imagetree.__file__).read_bytes() in recording.fed
    assert Path(relocation.__file__).read_bytes() in recording.fed
