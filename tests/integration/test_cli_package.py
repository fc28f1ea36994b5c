"""``squall package`` as a user runs it against the standalone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from _cli_client import HELLO_JS, Wsk, write
from _standalone import Standalone

from squall.cli.client import exits

pytestmark = pytest.mark.integration


@pytest.fixture
def wsk(standalone: Standalone, tmp_path: Path) -> Wsk:
    return Wsk.for_server(standalone, tmp_path)


def test_packages_bindings_and_their_parameters(wsk: Wsk, unique: Callable[[str], str]) -> None:
    # Given a package with an action, and a binding of it with a parameter of its own
    pkg, binding = unique("pkg"), unique("bound")
    assert wsk.run("package", "create", pkg, "--shared", "no").out == (
        f"ok: created package {pkg}\n"
    )
    wsk.run("action", "create", f"{pkg}/hello", str(write(wsk.home, "hello.js", HELLO_JS)))
    bound = wsk.run("package", "bind", pkg, binding, "-p", "name", "Bound")
    assert bound.out == f"ok: created binding {binding}\n"

    # When the action is invoked through the binding, the binding's parameter applies
    result = wsk.run("action", "invoke", f"{binding}/hello", "-r")
    assert json.loads(result.out) == {"greeting": "Hello Bound"}

    # And update, get, list show both
    assert wsk.run("package", "update", pkg, "-p", "name", "Pkg").out == (
        f"ok: updated package {pkg}\n"
    )
    got = wsk.json("package", "get", pkg)
    assert [a["name"] for a in got["actions"]] == ["hello"]
    assert got["parameters"] == [{"key": "name", "value": "Pkg"}]
    listed = wsk.run("package", "list", "--limit", "200").out.splitlines()
    assert listed[0] == "packages"
    rows = [line.split() for line in listed]
    assert [f"/guest/{binding}", "private", "binding", f"/guest/{pkg}"] in rows
    assert wsk.run("action", "list", pkg).out.splitlines()[1].split()[0] == f"/guest/{pkg}/hello"

    # When the package is deleted while it has an action: the server's 409
    busy = wsk.run("package", "delete", pkg, rc=exits.CONFLICT)
    assert "Package not empty (contains 1 entities)" in busy.err

    # With --force the package goes
    wsk.run("package", "delete", binding)
    assert wsk.run("package", "delete", pkg, "--force").out == f"ok: deleted package {pkg}\n"
    wsk.run("package", "get", pkg, rc=exits.NOT_FOUND)
