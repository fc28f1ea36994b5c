"""The forwarder between the completion path and the destinations: parsing a record's
lines, the bounded buffer, and what a dead destination costs (nothing but counted drops)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest

from squall.bus.memory import MemoryBus
from squall.entities.activation import Activation, format_log_line, from_builtins
from squall.errors import BadRequest
from squall.logforwarding.config import LogForwardingConfig
from squall.logforwarding.forwarder import BUFFER_FULL, ForwardingLimits, LogForwarder, entries_of
from squall.metrics.controller import ControllerMetrics
from squall.store.encrypted import EncryptedStore
from squall.store.encryption import KeyRing, Keys, new_key, parse_key
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

T0_NS = 1_700_000_000_123_456_789


def record(activation_id: str, *texts: str, namespace: str = "guest") -> Activation:
    return from_builtins(
        {
            "activationId": activation_id,
            "namespace": namespace,
            "name": "act",
            "start": 1_700_000_000_000,
            "annotations": [{"key": "path", "value": f"{namespace}/pkg/act"}],
            "logs": [format_log_line(T0_NS, "stderr", t) for t in texts],
            "response": {"status": "success", "statusCode": 0, "success": True, "result": {}},
        }
    )


def test_entries_carry_activation_path_stream_and_time() -> None:
    (entry,) = entries_of(record("a1", "hello: world"))
    assert (entry.activation_id, entry.namespace, entry.action) == ("a1", "guest", "guest/pkg/act")
    assert (entry.stream, entry.message) == ("stderr", "hello: world")
    assert entry.time_ms == T0_NS // 1_000_000
    odd = entries_of(from_builtins({**record("a2").to_json(), "logs": ["not the line format"]}))
    assert odd[0].message == "not the line format" and odd[0].time_ms == 1_700_000_000_000


def test_configurations_are_checked_and_shown_without_secrets() -> None:
    given = {"splunk_hec": {"host": "h", "port": 8088, "index": "i", "hec_token": "secret"}}
    config = LogForwardingConfig.from_request(given, 0)
    assert config.settings["port"] == "8088"  # aio sends a string; a number is taken too
    assert config.view() == {
        "splunk_hec": {"host": "h", "port": "8088", "index": "i", "updated_at": config.updated_at}
    }
    assert config.updated_at == "1970-01-01T00:00:00.000+00:00"
    bad: object
    for bad in ({}, {"x": {}}, {"new_relic": {"base_uri": "u"}}, {"new_relic": []}):
        with pytest.raises(BadRequest):
            LogForwardingConfig.from_request(bad, 0)


@pytest.fixture
async def store() -> AsyncIterator[EncryptedStore]:
    ring = KeyRing(Keys(parse_key(new_key(), "test")))
    opened = EncryptedStore(await SqliteStore.open(":memory:"), ring)
    try:
        yield opened
    finally:
        await opened.close()


def dropped(metrics: ControllerMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "squall_controller_log_forwarding_dropped_lines_total",
        {"destination": "splunk_hec", "reason": reason},
    )
    return value or 0.0


async def test_a_full_buffer_drops_whole_records_and_counts_them(store: EncryptedStore) -> None:
    # Given a forwarder with room for 3 lines, to a destination nobody listens on
    metrics = ControllerMetrics(MemoryBus(), lambda: [])
    forwarder = LogForwarder(
        store.entities,
        metrics,
        azure_url="http://127.0.0.1:9",
        limits=ForwardingLimits(buffer_lines=3, attempts=1, backoff_s=0.01, timeout_s=1),
    )
    dead = {"host": "http://127.0.0.1", "port": "9", "index": "i", "hec_token": "t"}
    await forwarder.set_config("guest", LogForwardingConfig.from_request({"splunk_hec": dead}, 0))
    try:
        # When two records of two lines each come in before the lane runs
        forwarder.submit(record("a1", "one", "two"))
        forwarder.submit(record("a2", "three", "four"))
        # Then the first waits, the second is dropped whole, counted and reported
        assert forwarder.pending() == 2
        assert dropped(metrics, BUFFER_FULL) == 2
        errors = forwarder.errors("guest")
        assert len(errors) == 1 and "activation a2 dropped" in errors[0]
        assert "buffer (3 lines) is full" in errors[0]
        # And the configuration's settings are in the store encrypted
        raw = await store.entities.inner.get("guest", "logforwarding", "config")
        token = next(p for p in raw.body["parameters"] if p["key"] == "hec_token")
        assert token["encryption"] == "aes-256" and token["value"] != "t"
    finally:
        await forwarder.close()
    # And what was still waiting at close is counted as dropped too (or failed meanwhile)
    assert dropped(metrics, "shutdown") + dropped(metrics, "destination_failed") == 2


async def test_a_namespace_that_forwards_nowhere_costs_no_buffer(store: EncryptedStore) -> None:
    metrics = ControllerMetrics(MemoryBus(), lambda: [])
    forwarder = LogForwarder(store.entities, metrics, azure_url="http://127.0.0.1:9")
    try:
        await forwarder.config("guest")  # known: the default destination
        forwarder.submit(record("a1", "one"))
        assert forwarder.pending() == 0
        assert forwarder.errors("guest") == []
    finally:
        await forwarder.close()


async def test_a_destination_set_through_another_controller_applies_after_the_ttl(
    store: EncryptedStore,
) -> None:
    # Given a controller that knows the namespace forwards nowhere, at time 0
    now = [0.0]
    metrics = ControllerMetrics(MemoryBus(), lambda: [])
    limits = ForwardingLimits(config_ttl_s=5.0, attempts=1, backoff_s=0.01, timeout_s=1)
    here = LogForwarder(store.entities, metrics, azure_url="x", limits=limits, clock=lambda: now[0])
    other = LogForwarder(store.entities, metrics, azure_url="x", limits=limits)
    try:
        await here.config("guest")
        # When another controller sets a destination, and the TTL passes
        dead = {"host": "http://127.0.0.1", "port": "9", "index": "i", "hec_token": "t"}
        await other.set_config("guest", LogForwardingConfig.from_request({"splunk_hec": dead}, 0))
        now[0] = 6.0
        # Then the next record is skipped while the configuration is read again
        here.submit(record("a1", "one"))
        assert here.pending() == 0

        async def refreshed() -> None:
            while here.pending() == 0:
                await asyncio.sleep(0.01)
                here.submit(record("a2", "two"))

        # And once it is read, records are taken for the new destination
        with anyio.fail_after(10):
            await refreshed()
    finally:
        await here.close()
        await other.close()
