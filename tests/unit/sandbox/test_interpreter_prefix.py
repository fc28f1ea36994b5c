"""The interpreter's install prefix a sandbox binds: looked up once per interpreter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from squall.sandbox.bwrap import interpreter_prefix


def test_an_interpreters_prefix_is_looked_up_on_the_file_system_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an interpreter installed outside the system paths
    executable = tmp_path / "prefix" / "bin" / "python9"
    executable.parent.mkdir(parents=True)
    executable.touch()
    looked_up: list[str] = []
    realpath = os.path.realpath

    def counting(path: str) -> str:
        looked_up.append(path)
        return realpath(path)

    monkeypatch.setattr(os.path, "realpath", counting)
    # When its prefix is asked for twice (two true cold starts of its kind)
    first = interpreter_prefix(str(executable))
    after_first = len(looked_up)
    second = interpreter_prefix(str(executable))
    # Then both answers are its install prefix, and only the first looked at the file system
    assert first == second == str(Path(realpath(tmp_path)) / "prefix")
    assert after_first > 0
    assert len(looked_up) == after_first
