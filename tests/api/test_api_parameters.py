"""Default parameters, and ``init: true`` parameters delivered to /init as environment."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from apisupport import NS, node_action, python_action

pytestmark = pytest.mark.anyio

NODE_ENV = "function main(args) { return {env: process.env.SECRET || null, args: args}; }"
PY_ENV = "import os\ndef main(args):\n    return {'env': os.environ.get('SECRET'), 'args': args}\n"


@pytest.mark.parametrize("make", [lambda: node_action(NODE_ENV), lambda: python_action(PY_ENV)])
async def test_init_parameters_are_environment_not_arguments(
    client: httpx.AsyncClient, unique: Callable[[str], str], make: Callable[[], dict[str, object]]
) -> None:
    # Given an action with an init parameter and a default parameter
    name = unique("initp")
    body = make()
    body["parameters"] = [
        {"key": "SECRET", "value": "s3cr3t", "init": True},
        {"key": "greeting", "value": "hi"},
    ]
    assert (await client.put(f"{NS}/actions/{name}", json=body)).status_code == 200
    # When it is invoked with a payload
    r = await client.post(
        f"{NS}/actions/{name}", params={"blocking": "true", "result": "true"}, json={"n": 1}
    )
    # Then the init parameter is in its environment only, defaults merge under the payload
    assert r.status_code == 200, r.text
    assert r.json() == {"env": "s3cr3t", "args": {"greeting": "hi", "n": 1}}
    # And the stored action keeps the init flag
    got = (await client.get(f"{NS}/actions/{name}")).json()
    assert {"key": "SECRET", "value": "s3cr3t", "init": True} in got["parameters"]


async def test_payload_overrides_default_parameters(
    client: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    name = unique("defaults")
    body = node_action(NODE_ENV, parameters=[{"key": "a", "value": 1}, {"key": "b", "value": 2}])
    assert (await client.put(f"{NS}/actions/{name}", json=body)).status_code == 200
    r = await client.post(
        f"{NS}/actions/{name}", params={"blocking": "true", "result": "true"}, json={"b": 3}
    )
    assert r.json()["args"] == {"a": 1, "b": 3}
