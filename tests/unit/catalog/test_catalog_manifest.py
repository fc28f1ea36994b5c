"""The standard catalog's manifest: every action has its Node.js source shipped beside it,
the source parses, and the entities are what the API would store for such an action."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

from _required import unavailable

from squall.catalog.manifest import PACKAGES, SAMPLES, SYSTEM_NAMESPACE, UTILS
from squall.entities.manifest import valid_kinds

ROOT = Path(__file__).resolve().parents[3]


def test_utils_has_every_action_of_openwhisks() -> None:
    assert {a.name for a in UTILS.actions} == {
        "echo", "cat", "sort", "split", "head", "date", "namespace", "smash", "hosturl"
    }  # fmt: skip
    # (every action of OpenWhisk's samples manifest, Swift ones included)
    assert {a.name for a in SAMPLES.actions} == {
        "cat", "countdown", "curl", "greeting", "head", "helloPromises", "helloWorld",
        "invoke", "printParams", "wordCount", "wordCountAsync",
    }  # fmt: skip


def test_exactly_the_actions_that_call_the_platform_ask_for_the_key() -> None:
    # An action using the openwhisk npm package needs __OW_API_KEY; no other gets it.
    for package in PACKAGES:
        for action in package.actions:
            calls = "require('openwhisk')" in package.source(action)
            assert action.provide_api_key is calls, (package.name, action.name)
            annotations = {kv["key"]: kv["value"] for kv in action.annotations("nodejs:20")}
            assert annotations["provide-api-key"] is calls
    assert {a.name for a in SAMPLES.actions if a.provide_api_key} == {
        "countdown", "helloPromises", "invoke"
    }  # fmt: skip


def test_each_source_is_shipped_and_parses() -> None:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed (apt-get install nodejs)")
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["squall.catalog"]
    for package in PACKAGES:
        # The sources are package data: in the wheel, not only in the checkout
        assert f"{package.name}/*.js" in package_data
        sources = {p.stem for p in (ROOT / "squall" / "catalog" / package.name).glob("*.js")}
        assert sources == {a.name for a in package.actions}, package.name
        for action in package.actions:
            code = package.source(action)
            done = subprocess.run(
                [node, "--check"], input=code, capture_output=True, text=True, check=False
            )
            assert done.returncode == 0, (package.name, action.name, done.stderr)
            assert "function main(" in code


def test_entities_are_published_nodejs_actions_of_whisk_system() -> None:
    for package in PACKAGES:
        entity = package.package()
        assert entity.publish and entity.path.namespace == SYSTEM_NAMESPACE
        for action in package.action_entities():
            assert action.path.namespace == SYSTEM_NAMESPACE
            assert action.path.package == package.name
            assert action.exec.kind in valid_kinds() and action.exec.kind.startswith("nodejs")
            annotations = {kv["key"]: kv["value"] for kv in action.annotations}
            assert annotations["exec"] == action.exec.kind
            assert annotations["description"]
