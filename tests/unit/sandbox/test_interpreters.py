"""Checking the manifest's kinds against the host: found, missing, mismatched, overridden."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from squall.entities.manifest import Manifest
from squall.errors import ConfigError
from squall.sandbox.interpreters import detect, load_manifest

MINE = f"{sys.version_info.major}.{sys.version_info.minor}"


def manifest(*kinds: dict[str, Any]) -> Manifest:
    return Manifest.from_json({"runtimes": {"python": list(kinds)}})


def python_kind(kind: str, *executables: str, **squall: Any) -> dict[str, Any]:
    return {"kind": kind, "default": False, "squall": {"executable": list(executables), **squall}}


def test_a_kind_runs_on_the_first_candidate_that_exists(tmp_path: Path) -> None:
    # Given a kind whose first candidate is absent and whose second is this Python
    kind = python_kind(f"python:{MINE}", str(tmp_path / "nothing" / "python"), "{python}")
    # When the host is checked
    found = detect(manifest(kind), tmp_path)
    # Then the kind is offered, run by the real binary, with its version
    interpreter = found.interpreters[f"python:{MINE}"]
    assert interpreter.executable == os.path.realpath(sys.executable)
    assert interpreter.version.startswith(MINE + ".")
    assert found.manifest.valid_kinds() == [f"python:{MINE}"]
    assert found.missing == {}


def test_a_bare_name_is_looked_up_on_path_and_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a kind naming its interpreter by a name on PATH (a shim or a symlink)
    link = tmp_path / "bin" / "mypython"
    link.parent.mkdir()
    link.symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{link.parent}:{os.environ['PATH']}")
    # When the host is checked
    found = detect(manifest(python_kind(f"python:{MINE}", "mypython")), tmp_path)
    # Then what runs is the binary the name leads to (what a sandbox can bind)
    assert found.interpreters[f"python:{MINE}"].executable == os.path.realpath(sys.executable)


def test_a_kind_without_an_interpreter_is_not_offered(tmp_path: Path) -> None:
    # Given a kind whose candidates are all absent (not installed)
    absent = python_kind("python:3.99", "{cache}/python-3.99/bin/python")
    present = python_kind(f"python:{MINE}", "{python}")
    # When the host is checked
    found = detect(manifest(absent, present), tmp_path)
    # Then only the other kind is offered, and the reason names what was tried
    assert found.manifest.valid_kinds() == [f"python:{MINE}"]
    assert found.get("python:3.99") is None
    assert found.missing["python:3.99"] == (
        f"no interpreter found (tried: {tmp_path}/python-3.99/bin/python)"
    )


def test_an_interpreter_of_another_version_refuses_to_start(tmp_path: Path) -> None:
    # Given a kind labelled 3.99 whose interpreter is this Python
    kind = python_kind("python:3.99", "{python}")
    # When the host is checked, Then start-up stops with what is wrong and what to do
    with pytest.raises(ConfigError) as refused:
        detect(manifest(kind), tmp_path)
    message = refused.value.message
    real = os.path.realpath(sys.executable)
    assert message.startswith(f"kind python:3.99 needs python 3.99, but {real}")
    assert f"is {MINE}." in message and "SQUALL_RUNTIMES_MANIFEST" in message


def test_libraries_are_used_when_installed(tmp_path: Path) -> None:
    # Given two kinds of this Python, one whose library directory exists
    (tmp_path / "libs-a").mkdir()
    kinds = manifest(
        python_kind(f"python:{MINE}", "{python}", libraries="{cache}/libs-a"),
    )
    missing = Manifest.from_json(
        {"runtimes": {"native": [python_kind("native", "{python}", libraries="{cache}/libs-b")]}}
    )
    # When the host is checked
    found = detect(kinds.merged(missing), tmp_path)
    # Then the installed one is bound, the other kind runs without libraries
    assert found.interpreters[f"python:{MINE}"].libraries == tmp_path / "libs-a"
    assert found.interpreters["native"].libraries is None
    # And blackbox actions run as native ones
    assert found.get("blackbox") == found.interpreters["native"]


def test_an_operator_file_is_merged_over_the_shipped_manifest(tmp_path: Path) -> None:
    # Given an operator's file adding a kind
    path = tmp_path / "runtimes.json"
    path.write_text(json.dumps({"runtimes": {"python": [python_kind("python:3.12", "x")]}}))
    # When loaded, Then the shipped kinds are there, and the new one after them
    loaded = load_manifest(path)
    assert loaded.valid_kinds()[-1] == "python:3.12"
    assert "nodejs:24" in loaded.valid_kinds()


@pytest.mark.parametrize("text", ["{", '{"runtimes": []}'])
def test_a_broken_operator_file_refuses_to_start(tmp_path: Path, text: str) -> None:
    path = tmp_path / "runtimes.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"runtimes manifest {path}: "):
        load_manifest(path)
    with pytest.raises(ConfigError, match="No such file"):
        load_manifest(tmp_path / "absent.json")


def test_a_default_kind_without_an_interpreter_leaves_a_stand_in_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a default kind that is not installed, and another kind of its family that is
    absent = {**python_kind("python:3.99", "{cache}/python-3.99/bin/python"), "default": True}
    present = python_kind(f"python:{MINE}", "{python}")
    # When the host is checked
    found = detect(manifest(present, absent), tmp_path)
    # Then python:default is the kind that runs here, in place of the missing default
    assert found.manifest.resolve_kind("python:default") == f"python:{MINE}"
    assert found.stand_ins == {"python:3.99": f"python:{MINE}"}
    # And start-up says why, and how to get the default back
    with caplog.at_level("WARNING", logger="squall.sandbox.interpreters"):
        found.log_summary()
    assert (
        f"the default kind python:3.99 is not offered here, so python:default is python:{MINE} "
        "(run: squall runtimes install, then restart)"
    ) in caplog.messages
