"""An accepted activation is visible at once: ``pending`` until it ends, never a 404."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from apisupport import NS, annotation, get_activation, node_action

pytestmark = pytest.mark.anyio

SLOW = "function main() { return new Promise((ok) => setTimeout(() => ok({done: true}), 800)); }"


async def test_accepted_activation_is_pending_then_final(
    client: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    # Given a slow action
    name = unique("slow")
    r = await client.put(f"{NS}/actions/{name}", json=node_action(SLOW))
    assert r.status_code == 200, r.text
    # When it is invoked without blocking
    r = await client.post(f"{NS}/actions/{name}")
    assert r.status_code == 202, r.text
    activation_id = r.json()["activationId"]
    # Then its record is there at once, pending, with the action's path
    r = await client.get(f"{NS}/activations/{activation_id}")
    assert r.status_code == 200, r.text
    pending = r.json()
    assert pending["response"]["status"] == "pending"
    assert "statusCode" not in pending["response"]
    assert "end" not in pending and pending["name"] == name
    assert annotation(pending, "path") == f"guest/{name}"
    # And listing shows it too, without a status code yet
    r = await client.get(f"{NS}/activations", params={"name": name})
    listed = [a for a in r.json() if a["activationId"] == activation_id]
    assert listed and "statusCode" not in listed[0]
    # And its result is the pending response
    r = await client.get(f"{NS}/activations/{activation_id}/result")
    assert r.json()["status"] == "pending"
    # When the action ends / Then the final record replaces the pending one
    final = await get_activation(client, activation_id)
    assert final["response"]["status"] == "success"
    assert final["response"]["result"] == {"done": True}
    r = await client.get(f"{NS}/activations", params={"name": name, "count": "true"})
    assert r.json() == {"activations": 1}
