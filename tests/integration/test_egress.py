"""Actions reach the outside as on OpenWhisk — through ``squall standalone`` as a user runs
it, with its default egress rules — and a namespace set to ``network: none`` reaches
nothing. The only "outside" is the test's own network namespace (tests/netsupport.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _standalone import Standalone, admin, start
from netsupport import HTTP_PORT, METADATA, NAME, OutsideHost

pytestmark = pytest.mark.integration

# Both fetch every URL they are given and report the status or the error's kind.
FETCH_JS = """
async function main(args) {
  const out = {apiHost: process.env.__OW_API_HOST};
  for (const [name, url] of Object.entries(args.urls)) {
    try {
      const r = await fetch(url, {signal: AbortSignal.timeout(5000)});
      out[name] = r.status;
    } catch (e) {
      out[name] = 'failed: ' + ((e.cause && e.cause.code) || e.name);
    }
  }
  return out;
}
"""
FETCH_PY = """
import os, urllib.request
def main(args):
    out = {"apiHost": os.environ["__OW_API_HOST"]}
    for name, url in args["urls"].items():
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                out[name] = answer.status
        except Exception as ex:
            out[name] = "failed: " + type(ex).__name__
    return out
"""
ACTIONS = {"js": ("nodejs:20", FETCH_JS), "py": ("python:3.11", FETCH_PY)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, outside: OutsideHost) -> Iterator[Standalone]:
    # Sandboxes resolve names with the outside host's resolver only: no query leaves.
    assert outside.resolver is not None
    server = start(
        tmp_path_factory.mktemp("egress") / "home", env={"SQUALL_SANDBOX_DNS": outside.resolver}
    )
    try:
        yield server
    finally:
        server.stop_cleanly()


def fetch_all(client: httpx.Client, name: str, urls: dict[str, str]) -> dict[str, Any]:
    kind, code = ACTIONS[name]
    put = client.put(
        f"/namespaces/_/actions/{name}?overwrite=true", json={"exec": {"kind": kind, "code": code}}
    )
    assert put.status_code == 200, put.text
    answer = client.post(
        f"/namespaces/_/actions/{name}", params={"blocking": "true"}, json={"urls": urls}
    )
    assert answer.status_code == 200, answer.text
    record: dict[str, Any] = answer.json()
    assert record["response"]["success"], record
    result: dict[str, Any] = record["response"]["result"]
    return result


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_an_action_fetches_from_outside_but_never_the_platform_or_private_ranges(
    server: Standalone, outside: OutsideHost, name: str
) -> None:
    # Given the platform's default egress rules
    port = server.api_host.rsplit(":", 1)[1]
    urls = {
        "byName": f"http://{NAME}:{HTTP_PORT}/",
        "byAddress": outside.url,
        "loopbackApi": f"http://127.0.0.1:{port}/api/v1",
        "private": f"http://{outside.private}:{HTTP_PORT}/",
        "metadata": f"http://{METADATA}:{HTTP_PORT}/latest/meta-data/",
    }
    with server.client() as client:
        # When an action fetches each of them
        result = fetch_all(client, name, urls)
        # And, in a second run, the API at the address it was given
        api = fetch_all(client, name, {"api": result["apiHost"] + "/api/v1"})
    # Then the outside host answers, by name and by address; the API answers at the
    # address the action was given; loopback, private and metadata addresses do not
    assert result["byName"] == 200 and result["byAddress"] == 200, result
    assert api["api"] == 200, api
    for blocked in ("loopbackApi", "private", "metadata"):
        assert str(result[blocked]).startswith("failed: "), (blocked, result)


def test_a_namespace_without_network_reaches_nothing(
    server: Standalone, outside: OutsideHost
) -> None:
    # Given a namespace whose sandboxes have no network
    namespace = "no-network"
    created = admin(server.home, "user", "create", namespace).strip()
    admin(server.home, "limits", "set", namespace, "--network", "none")
    uid, _, key = created.partition(":")
    with server.client(auth=(uid, key)) as client:
        for name in ACTIONS:
            # When its actions fetch from the outside host and the API
            result = fetch_all(client, name, {"outside": outside.url})
            api = fetch_all(client, name, {"api": result["apiHost"] + "/api/v1"})
            # Then nothing answers
            assert str(result["outside"]).startswith("failed: "), result
            assert str(api["api"]).startswith("failed: "), api
