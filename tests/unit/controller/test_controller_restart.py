"""Standalone's start-up recovery (``controller/restart.py``), in process: what a crash
left unfinished in the store — written here with the store's own methods, as the
activator, the composer and the invoker write it — runs if it never started and ends
with an error if it had."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from squall.bus.messages import ActivationMessage, invoker_topic
from squall.cli.standalone import Standalone
from squall.config import Settings
from squall.controller.balancer import LeanBalancer
from squall.controller.restart import (
    CONTROLLER_INTERRUPTED,
    INTERRUPTED,
    NOTHING_STORED,
    UNRECOVERABLE,
    resume_owned,
)
from squall.entities.activation import (
    Activation,
    ActivationResponse,
    new_activation_id,
    now_ms,
    pending_record,
)
from squall.entities.activation import ended as end_of
from squall.invoker.activate import ACTION_REMOVED
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

ADD_ONE = "function main(p) { return {n: (p.n || 0) + 1} }"


@asynccontextmanager
async def platform(home: Path) -> AsyncIterator[tuple[Standalone, httpx.AsyncClient]]:
    system = await Standalone.start(Settings(home=home, keep_warm_s=60))
    user, _, key = system.guest_auth.partition(":")
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=system.app),
            base_url="http://testserver/api/v1/namespaces/_",
            auth=(user, key),
            timeout=30.0,
        ) as client:
            yield system, client
    finally:
        await system.close()


async def poll(probe: Callable[[], Any], deadline_s: float = 30.0) -> Any:
    end = time.monotonic() + deadline_s
    while True:
        value = await probe()
        if value is not None:
            return value
        assert time.monotonic() < end, f"gave up waiting for {probe}"
        await asyncio.sleep(0.05)


async def final(client: httpx.AsyncClient, activation_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        r = await client.get(f"/activations/{activation_id}")
        assert r.status_code == 200, r.text
        record: dict[str, Any] = r.json()
        return None if record["response"]["status"] == "pending" else record

    result: dict[str, Any] = await poll(probe)
    return result


def left_over(
    action: dict[str, Any], n: int, kind: str, *, accepted_ms: int | None = None
) -> tuple[Activation, ActivationMessage]:
    """A pending record and its message, as an invoke accepted them."""
    activation_id = new_activation_id()
    fqn = f"/guest/{action['name']}"
    message = ActivationMessage(
        transid="t" * 32,
        activation_id=activation_id,
        namespace="guest",
        subject="guest",
        action=fqn,
        revision=action["rev"],
        content={"n": n},
        blocking=True,
        controller="0",
        accepted_ms=accepted_ms or now_ms(),
    )
    record = pending_record(
        namespace="guest",
        subject="guest",
        activation_id=activation_id,
        name=action["name"],
        path=fqn.lstrip("/"),
        version="0.0.1",
        accepted_ms=message.accepted_ms,
        annotations=[{"key": "kind", "value": kind}],
    )
    return record, message


async def test_a_restart_runs_what_never_started_and_ends_what_had(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # Given an action, a sequence of it twice, and an action deleted afterwards
    actions: dict[str, dict[str, Any]] = {}
    async with platform(home) as (system, client):
        for name, body in (
            ("add", {"exec": {"kind": "nodejs:20", "code": ADD_ONE}}),
            ("twice", {"exec": {"kind": "sequence", "components": ["/_/add", "/_/add"]}}),
            ("gone", {"exec": {"kind": "nodejs:20", "code": ADD_ONE}}),
        ):
            r = await client.put(f"/actions/{name}", json=body)
            assert r.status_code == 200, r.text
            doc = await system.store.entities.get("guest", "actions", name)
            actions[name] = {"name": name, "rev": doc.rev}
        assert (await client.delete("/actions/gone")).status_code == 200
    # And what a crash would have left: a queued activation and a queued sequence (each
    # with its message), one that had started, one of the deleted action, and one with
    # nothing to run it from
    queued, queued_message = left_over(actions["add"], 41, "nodejs:20")
    sequence, sequence_message = left_over(actions["twice"], 1, "sequence")
    started, _ = left_over(actions["add"], 7, "nodejs:20")
    deleted, deleted_message = left_over(actions["gone"], 1, "nodejs:20")
    bare, _ = left_over(actions["add"], 1, "nodejs:20")
    store = await SqliteStore.open(home / "squall.db")
    try:
        await store.activations.put_pending(queued, queued_message.to_bytes())
        await store.activations.put_pending(sequence, sequence_message.to_bytes())
        await store.activations.put_pending(started, b"unused")
        assert await store.activations.start(started) is True
        await store.activations.put_pending(deleted, deleted_message.to_bytes())
        await store.activations.put_pending(bare)
    finally:
        await store.close()
    # When the platform starts again on that home
    async with platform(home) as (system, client):
        # Then what never started ran, with its payload and its id
        ran = await final(client, queued.activation_id)
        assert ran["response"]["status"] == "success", ran
        assert ran["response"]["result"] == {"n": 42}
        composed = await final(client, sequence.activation_id)
        assert composed["response"]["result"] == {"n": 3}, composed
        assert len(composed["logs"]) == 2
        # And what had started ended with the error that says why
        ended = await final(client, started.activation_id)
        assert ended["response"]["status"] == "whisk internal error"
        assert ended["response"]["result"] == {"error": INTERRUPTED}
        # And what could not be run again ended saying why: nothing stored to run it
        # from, or (found by the invoker, as for any activation) its action gone
        ended = await final(client, bare.activation_id)
        assert ended["response"]["result"] == {"error": UNRECOVERABLE.format(why=NOTHING_STORED)}, (
            ended
        )
        ended = await final(client, deleted.activation_id)
        assert ended["response"]["status"] == "whisk internal error", ended
        assert ended["response"]["result"] == {"error": ACTION_REMOVED}, ended
        # And nothing is left unfinished
        assert await system.store.activations.unfinished("", 10) == []


async def test_the_invoker_runs_nothing_whose_start_it_does_not_win(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an action, and an activation of it already ended (say, by the controller
    # that moved it off this invoker, or by a restart)
    async with platform(tmp_path / "home") as (system, client):
        r = await client.put("/actions/add", json={"exec": {"kind": "nodejs:20", "code": ADD_ONE}})
        assert r.status_code == 200, r.text
        doc = await system.store.entities.get("guest", "actions", "add")
        record, message = left_over({"name": "add", "rev": doc.rev}, 1, "nodejs:20")
        ended = end_of(record, ActivationResponse.whisk_error("moved"))
        await system.store.activations.put(ended)
        # When its message reaches the invoker anyway
        caplog.set_level("WARNING", logger="squall.invoker")
        await system.bus.send(invoker_topic(system.invoker.id), message.to_bytes())

        # Then the invoker refuses to run it (its start is not granted) ...
        async def refused() -> bool | None:
            return any(record.activation_id in r.getMessage() for r in caplog.records) or None

        await poll(refused)
        # ... and leaves the record as it was: nothing ran, nothing was recorded
        stored = await system.store.activations.get("guest", record.activation_id)
        assert stored == ended


async def sequence_twice(system: Standalone, client: httpx.AsyncClient) -> dict[str, str]:
    """Create ``add`` and the sequence ``twice`` (add, add); its name and revision."""
    for name, body in (
        ("add", {"exec": {"kind": "nodejs:20", "code": ADD_ONE}}),
        ("twice", {"exec": {"kind": "sequence", "components": ["/_/add", "/_/add"]}}),
    ):
        r = await client.put(f"/actions/{name}", json=body)
        assert r.status_code == 200, r.text
    doc = await system.store.entities.get("guest", "actions", "twice")
    return {"name": "twice", "rev": doc.rev}


async def test_a_controller_takes_back_only_what_earlier_runs_of_its_id_left(
    tmp_path: Path,
) -> None:
    # Given a running platform (controller id 0) with a sequence
    async with platform(tmp_path / "home") as (system, client):
        twice = await sequence_twice(system, client)
        composer = system.controller.activator.composer
        assert composer is not None and composer.owner.startswith("0/")
        # And sequences its composer's owner records: two of an earlier incarnation of
        # id 0 (one never started, one started), one of this incarnation (running), one
        # of controller 1
        runs = {
            key: left_over(twice, 1, "sequence") for key in ("queued", "started", "mine", "other")
        }
        owners = {"queued": "0/gone", "started": "0/gone", "mine": composer.owner,
                  "other": "1/alive"}  # fmt: skip
        for key, (record, message) in runs.items():
            await system.store.activations.put_pending(record, message.to_bytes(), owners[key])
            if key != "queued":
                assert await system.store.activations.start(record) is True
        # When the controller resumes what is its id's
        balancer = LeanBalancer(system.system.bus, system.settings.invoker_id)
        done = await resume_owned(system.controller, balancer)
        # Then the never-started one ran, the started one ended with the error saying why
        assert (done.ran, done.ended) == (1, 1)
        ran = await final(client, runs["queued"][0].activation_id)
        assert ran["response"]["result"] == {"n": 3}, ran
        cut = await final(client, runs["started"][0].activation_id)
        assert cut["response"]["status"] == "whisk internal error"
        assert cut["response"]["result"] == {"error": CONTROLLER_INTERRUPTED}
        # And what this incarnation and another controller run is left to them
        left = await system.store.activations.unfinished("", 10)
        assert {u.record.activation_id: u.owner for u in left} == {
            runs["mine"][0].activation_id: composer.owner,
            runs["other"][0].activation_id: "1/alive",
        }


async def test_a_stopping_controller_leaves_what_it_had_not_resumed_yet(tmp_path: Path) -> None:
    # Given a sequence an earlier incarnation of controller 0 accepted and never started
    async with platform(tmp_path / "home") as (system, client):
        record, message = left_over(await sequence_twice(system, client), 1, "sequence")
        await system.store.activations.put_pending(record, message.to_bytes(), "0/gone")
        # When the composer has closed (the process is stopping) before it is resumed
        composer = system.controller.activator.composer
        assert composer is not None
        await composer.close()
        balancer = LeanBalancer(system.system.bus, system.settings.invoker_id)
        done = await resume_owned(system.controller, balancer)
        # Then it is neither run nor ended: still queued, for the next start
        assert (done.ran, done.ended) == (0, 0)
        left = await system.store.activations.unfinished("", 10)
        assert [(u.record.activation_id, u.started, u.owner) for u in left] == [
            (record.activation_id, False, "0/gone")
        ]
