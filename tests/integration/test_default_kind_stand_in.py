"""A host where the default Python kind could not be installed still serves Python actions.

``python:3.13`` is the default Python kind; ``squall runtimes install`` (run by ``./dev``)
skips it where its interpreter cannot be installed (no ``patchelf``, no Debian archive).
A real ``squall standalone`` on a runtimes cache without it must start, say why at
start-up, and run ``python:default`` actions on ``python:3.11``, which stands in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _standalone import Standalone, start

from squall.sandbox.interpreters import default_cache

#: What the runtimes cache holds for python:3.13 (its interpreter and its library set).
PYTHON_313 = ("python-3.13", "python3.13-libraries")
STAND_IN_MESSAGE = (
    "the default kind python:3.13 is not offered here, so python:default is python:3.11 "
    "(run: squall runtimes install, then restart)"
)


@pytest.fixture(scope="module")
def without_313(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    # A runtimes cache with everything of the real one but python:3.13
    real = Path(os.environ.get("SQUALL_RUNTIMES_CACHE") or default_cache())
    cache = tmp_path_factory.mktemp("runtimes")
    for entry in real.iterdir():
        if entry.name not in PYTHON_313 and not entry.name.startswith("."):
            (cache / entry.name).symlink_to(entry)
    server = start(tmp_path_factory.mktemp("home"), env={"SQUALL_RUNTIMES_CACHE": str(cache)})
    try:
        yield server
    finally:
        server.stop_cleanly()


def test_python_default_runs_on_the_stand_in_and_start_up_says_why(
    without_313: Standalone,
) -> None:
    # Given a standalone whose runtimes cache lacks python:3.13, Then it started and said
    # which kind stands in for the default, and how to get it back
    assert STAND_IN_MESSAGE in without_313.log()
    with without_313.client() as client:
        # And GET / shows python:3.11 as the Python default
        root = client.get(f"{without_313.api_host}/", auth=None)
        python = root.json()["runtimes"]["python"]
        assert [(k["kind"], k["default"]) for k in python] == [("python:3.11", True)]
        # When a python:default action is created and invoked
        code = "import sys\ndef main(a):\n    return {'minor': sys.version_info[1]}\n"
        put = client.put(
            "/namespaces/_/actions/py", json={"exec": {"kind": "python:default", "code": code}}
        )
        assert put.status_code == 200, put.text
        assert put.json()["exec"]["kind"] == "python:3.11"
        ran = client.post("/namespaces/_/actions/py", params={"blocking": "true", "result": "true"})
        # Then it runs, on CPython 3.11
        assert ran.status_code == 200, ran.text
        assert ran.json() == {"minor": 11}
