"""Bus messages keep their schema: versioned JSON that round-trips exactly."""

from __future__ import annotations

import orjson
import pytest
from msgspec.structs import replace

from squall.bus.messages import (
    INVOKER_UP,
    SCHEMA_VERSION,
    ActivationMessage,
    Completion,
    Invalidation,
    InvokerPing,
    MessageError,
    Redispatch,
    completion_topic,
    decode_inbox,
    invoker_topic,
)
from squall.entities.activation import Activation, ActivationResponse, final_record


def _message() -> ActivationMessage:
    return ActivationMessage(
        transid="t" * 32,
        activation_id="a" * 32,
        namespace="guest",
        subject="guest",
        action="/guest/pkg/hello",
        revision="2-abc",
        content={"name": "Ada", "n": [1, 2]},
        blocking=True,
        controller="0",
        accepted_ms=1_700_000_000_000,
        init_args={"SECRET": "x"},
        cause="c" * 32,
        caused_by="sequence",
    )


def test_activation_message_round_trips() -> None:
    # Given a message / When it is encoded and decoded / Then it is equal
    message = _message()
    assert ActivationMessage.from_bytes(message.to_bytes()) == message


def test_activation_message_schema_is_stable() -> None:
    # Given a message / When encoded / Then the wire fields are exactly these
    raw = orjson.loads(_message().to_bytes())
    assert raw["v"] == SCHEMA_VERSION and raw["t"] == "activation"
    assert set(raw) == {
        "v", "t", "transid", "activationId", "namespace", "subject", "action", "revision",
        "content", "blocking", "controller", "acceptedMs", "initArgs", "cause", "causedBy",
        "storeRecord", "network", "started",
    }  # fmt: skip


def test_activation_message_without_cause_fields_decodes() -> None:
    # Given the wire form of a message that is nobody's step (no cause fields at all)
    raw = orjson.loads(_message().to_bytes())
    del raw["cause"], raw["causedBy"]
    # When it is decoded / Then both are None
    decoded = ActivationMessage.from_bytes(orjson.dumps(raw))
    assert decoded.cause is None
    assert decoded.caused_by is None


def test_activation_message_of_an_older_controller_is_stored() -> None:
    # Given the wire form of a message sent before storeRecord existed
    raw = orjson.loads(_message().to_bytes())
    del raw["storeRecord"]
    # When it is decoded / Then its record is stored, as it always was
    assert ActivationMessage.from_bytes(orjson.dumps(raw)).store_record is True


def test_activation_message_of_an_older_controller_is_not_started() -> None:
    # Given the wire form of a message sent before `started` existed, and a moved one
    raw = orjson.loads(_message().to_bytes())
    del raw["started"]
    moved = replace(_message(), started=True)
    # When decoded / Then the invoker still has to mark the first; the second round-trips
    assert ActivationMessage.from_bytes(orjson.dumps(raw)).started is False
    assert ActivationMessage.from_bytes(moved.to_bytes()) == moved


def _record() -> Activation:
    return final_record(
        namespace="guest",
        name="hello",
        subject="guest",
        activation_id="a" * 32,
        start=1000,
        end=1003,
        response=ActivationResponse.ok({"greeting": "hi"}, 19),
        annotations=[{"key": "path", "value": "guest/hello"}],
    )


def test_completion_round_trips() -> None:
    completion = Completion("t", "a" * 32, "0", _record())
    assert Completion.from_bytes(completion.to_bytes()) == completion


def test_completion_carries_the_record_in_its_stored_shape() -> None:
    # Given a completion / When encoded / Then its record is the stored JSON of the record
    raw = orjson.loads(Completion("t", "a" * 32, "0", _record()).to_bytes())
    assert raw["v"] == SCHEMA_VERSION and raw["t"] == "completion"
    assert raw["record"] == _record().to_json()
    assert raw["record"]["response"] == {
        "status": "success", "statusCode": 0, "success": True, "result": {"greeting": "hi"},
        "size": 19,
    }  # fmt: skip


def test_the_inbox_decodes_completions_and_redispatches_alike() -> None:
    # Given both kinds of message a controller's completion topic carries
    completion = Completion("t", "a" * 32, "0", _record())
    redispatch = Redispatch(_message(), "1")
    # When decoded without knowing which / Then each is itself
    assert decode_inbox(completion.to_bytes()) == completion
    assert decode_inbox(redispatch.to_bytes()) == redispatch
    # And anything else is refused
    with pytest.raises(MessageError):
        decode_inbox(_message().to_bytes())


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        orjson.dumps({"v": SCHEMA_VERSION + 1, "t": "activation"}),
        orjson.dumps({"v": SCHEMA_VERSION, "t": "completion"}),
        orjson.dumps({"v": SCHEMA_VERSION, "t": "activation", "transid": "x"}),
    ],
)
def test_malformed_or_foreign_messages_are_rejected(data: bytes) -> None:
    # Given bytes that are not a current activation message / Then decoding refuses them
    with pytest.raises(MessageError):
        ActivationMessage.from_bytes(data)


def test_topics() -> None:
    assert invoker_topic("3") == "invoker.3"
    assert completion_topic("0") == "completed.0"


def test_cluster_messages_round_trip_with_a_stable_schema() -> None:
    # Given an invoker ping, a cache invalidation and a redispatch
    ping = InvokerPing(
        "1", 2048, INVOKER_UP, 1_700_000_000_000, busy_mb=256, containers=3, incarnation="i1"
    )
    change = Invalidation("0", "guest", "pkg/hello")
    redispatch = Redispatch(_message(), "1")
    # Then each decodes to itself, and carries its type and version
    assert InvokerPing.from_bytes(ping.to_bytes()) == ping
    assert Invalidation.from_bytes(change.to_bytes()) == change
    assert Redispatch.from_bytes(redispatch.to_bytes()) == redispatch
    assert orjson.loads(ping.to_bytes()) == {
        "v": SCHEMA_VERSION, "t": "ping", "invoker": "1", "userMemoryMb": 2048,
        "state": INVOKER_UP, "sentMs": 1_700_000_000_000, "busyMb": 256, "containers": 3,
        "incarnation": "i1",
    }  # fmt: skip
    assert orjson.loads(change.to_bytes()) == {
        "v": SCHEMA_VERSION, "t": "invalidation", "controller": "0", "namespace": "guest",
        "path": "pkg/hello",
    }  # fmt: skip
    # And one type is never read as another
    with pytest.raises(MessageError):
        Completion.from_bytes(redispatch.to_bytes())
    with pytest.raises(MessageError):
        InvokerPing.from_bytes(change.to_bytes())
