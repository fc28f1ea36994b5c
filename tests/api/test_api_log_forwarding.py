"""Log forwarding (Adobe I/O Runtime's API): a namespace sets a destination, and its
activations' logs reach a loopback receiver speaking that destination's ingest protocol;
with the receiver gone, invocations go on and the dropped lines are counted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from apisupport import NS, assert_error, node_action, poll
from logreceiver import (
    AZURE_CUSTOMER_ID,
    AZURE_LOG_TYPE,
    AZURE_SHARED_KEY,
    NEW_RELIC_KEY,
    SPLUNK_TOKEN,
    Receiver,
    free_port,
)

from squall.cli.standalone import Standalone
from squall.config import Settings

pytestmark = pytest.mark.anyio

LF = "/runtime/namespaces/guest/logForwarding"
LOGGER = (
    "function main(p) {\n"
    "  console.log('line one ' + p.mark);\n"
    "  console.error('line two ' + p.mark);\n"
    "  return {};\n"
    "}\n"
)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="module")
async def system(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> AsyncIterator[Standalone]:
    """The module's platform, with Azure's Data Collector URL on the receiver."""
    settings = Settings(
        home=tmp_path_factory.mktemp("squall-lf"),
        keep_warm_s=60,
        invocations_per_minute=100_000,
        concurrent_invocations=10_000,
        log_forwarding_azure_url=receiver.url,
    )
    platform = await Standalone.start(settings)
    try:
        yield platform
    finally:
        await platform.close()


async def invoke_logging(client: httpx.AsyncClient, name: str, mark: str) -> str:
    r = await client.post(f"{NS}/actions/{name}", params={"blocking": "true"}, json={"mark": mark})
    assert r.status_code == 200, r.text
    assert r.json()["response"]["status"] == "success"
    return str(r.json()["activationId"])


def destinations(receiver: Receiver) -> dict[str, dict[str, Any]]:
    return {
        "splunk_hec": {
            "host": "http://127.0.0.1",
            "port": str(receiver.port),
            "index": "runtime",
            "hec_token": SPLUNK_TOKEN,
        },
        "azure_log_analytics": {
            "customer_id": AZURE_CUSTOMER_ID,
            "shared_key": AZURE_SHARED_KEY,
            "log_type": AZURE_LOG_TYPE,
        },
        "new_relic": {"base_uri": f"{receiver.url}/log/v1", "license_key": NEW_RELIC_KEY},
    }


SECRET_SETTINGS = {"hec_token", "shared_key", "license_key"}


@pytest.mark.parametrize("destination", ["splunk_hec", "azure_log_analytics", "new_relic"])
async def test_logs_reach_the_destination(
    client: httpx.AsyncClient,
    receiver: Receiver,
    unique: Callable[[str], str],
    destination: str,
) -> None:
    # Given the namespace forwards there (as aio rt:namespace:log-forwarding:set:* sets it)
    settings = destinations(receiver)[destination]
    put = await client.put(LF, json={destination: settings})
    assert put.status_code == 200, put.text
    # Then the answer and GET show the settings without the secret, with updated_at
    shown = put.json()[destination]
    assert set(shown) == {*(set(settings) - SECRET_SETTINGS), "updated_at"}
    assert (await client.get(LF)).json() == put.json()
    # When an action that logs two lines runs
    name, mark = unique("logger"), unique("mark")
    assert (await client.put(f"{NS}/actions/{name}", json=node_action(LOGGER))).is_success
    activation_id = await invoke_logging(client, name, mark)
    # Then both lines reach the receiver, which checked the credentials, with their
    # activation, namespace, action and stream
    found = await receiver.wait_for(
        lambda d, e: d == destination and mark in str(e) and "line two" in str(e)
    )
    first = await receiver.wait_for(
        lambda d, e: d == destination and mark in str(e) and "line one" in str(e)
    )
    for _, entry in found + first:
        fields = entry.get("event", entry)  # Splunk wraps them in "event"
        assert fields["activationId"] == activation_id
        assert fields["namespace"] == "guest"
        assert fields["action"] == f"guest/{name}"
    assert (found[0][1].get("event") or found[0][1])["stream"] == "stderr"
    if destination == "splunk_hec":
        assert found[0][1]["index"] == "runtime"
    # And nothing went wrong
    errors = (await client.get(f"{LF}/errors")).json()
    assert errors == {"configured_forwarder": destination, "errors": []}


async def test_credentials_are_stored_encrypted(
    system: Standalone, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Given each destination set in turn, with its credentials
    for destination, settings in destinations(receiver).items():
        assert (await client.put(LF, json={destination: settings})).status_code == 200
    # Then the store's file (with its WAL) holds none of the credentials
    home = system.settings.home
    raw = b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("squall.db"))
    assert b"customer_id" in raw or b"base_uri" in raw  # the grep reads the data
    for secret in (SPLUNK_TOKEN, AZURE_SHARED_KEY, NEW_RELIC_KEY):
        assert secret.encode() not in raw


async def test_bad_configurations_are_400(client: httpx.AsyncClient) -> None:
    assert_error(await client.put(LF, json={"syslog": {}}), 400)
    assert_error(await client.put(LF, json={"splunk_hec": {"host": "h"}}), 400)
    assert_error(
        await client.put(LF, json={"new_relic": {"base_uri": "u", "license_key": ""}}), 400
    )
    assert_error(await client.put(LF, json={"a": {}, "b": {}}), 400)
    two: dict[str, dict[str, str]] = {"adobe_io_runtime": {}, "new_relic": {}}
    assert_error(await client.put(LF, json=two), 400)


async def test_default_destination_forwards_nothing(client: httpx.AsyncClient) -> None:
    put = await client.put(LF, json={"adobe_io_runtime": {}})
    assert put.status_code == 200
    assert list(put.json()) == ["adobe_io_runtime"]
    errors = (await client.get(f"{LF}/errors")).json()
    assert errors["configured_forwarder"] == "adobe_io_runtime"


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    """A sample of ``/metrics`` (0 before anything was counted with these labels)."""
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_dead_destination_never_breaks_invocations_and_drops_are_counted(
    client: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    # Given the namespace forwards to a Splunk that is not there (nothing listens)
    dead = {"host": "http://127.0.0.1", "port": str(free_port()), "index": "i", "hec_token": "t"}
    assert (await client.put(LF, json={"splunk_hec": dead})).status_code == 200
    dropped_before = await metric(
        client,
        "squall_controller_log_forwarding_dropped_lines_total",
        destination="splunk_hec",
        reason="destination_failed",
    )
    # When actions that log run
    name = unique("deadlogger")
    assert (await client.put(f"{NS}/actions/{name}", json=node_action(LOGGER))).is_success
    for i in range(5):
        await invoke_logging(client, name, f"dead-{i}")  # each answers, successfully

    # Then the lines that could not be delivered are counted as dropped
    async def all_dropped() -> float | None:
        now = await metric(
            client,
            "squall_controller_log_forwarding_dropped_lines_total",
            destination="splunk_hec",
            reason="destination_failed",
        )
        return now if now - dropped_before >= 10 else None

    await poll(all_dropped, 60.0, "10 dropped lines in /metrics")
    # And the errors endpoint says what failed
    errors = (await client.get(f"{LF}/errors")).json()
    assert errors["configured_forwarder"] == "splunk_hec"
    assert errors["errors"] and "dropped after 3 attempts" in errors["errors"][-1]
    assert "ConnectError" in errors["errors"][-1]
