"""``squall standalone`` killed with SIGKILL under mixed load, then started again on the
same home: every accepted activation ends exactly once.

Each round loads the server with non-blocking and blocking invokes, a sequence and
trigger fires (whose rule runs an action), kills it at a random moment, reads what the
store holds unfinished (queued: never started; started: may have run), and starts it
again. The actions tell a :class:`~netsupport.Witness` on the test's outside host their
activation id when they start, so the test counts every run itself. At the end:

- no accepted id is pending, and the store lists nothing unfinished;
- no activation ran twice (the witness saw no id more than once);
- what was queued at the kill ran after the restart (success, seen once by the witness);
- what had started ended with the whisk internal error that says why, and no more;
- over the rounds, some queued work was recovered (the kills did hit a queue).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from _standalone import Standalone, poll, start
from netsupport import WITNESS_JS, OutsideHost, Witness

from squall.controller.restart import INTERRUPTED
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

ROUNDS = 5
# Four runs at a time (128 MB each in 512 MB), each ~300 ms: a burst queues up.
ENV = {"SQUALL_USER_MEMORY_MB": "512"}
SLEEP_MS = 300
BURST = 16
RECOVERY_DEADLINE_S = 90.0


@dataclass
class Accepted:
    """Ids the server accepted (answered with an id), by how."""

    nonblocking: set[str] = field(default_factory=set)
    blocking: set[str] = field(default_factory=set)
    sequences: set[str] = field(default_factory=set)
    fires: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, activation_id: str) -> None:
        with self.lock:
            getattr(self, kind).add(activation_id)

    def all(self) -> set[str]:
        return self.nonblocking | self.blocking | self.sequences | self.fires


@dataclass
class Snapshot:
    """What the store held unfinished right after a kill."""

    queued: set[str]
    started: set[str]


@pytest.fixture
def witness(outside: OutsideHost) -> Iterator[Witness]:
    w = Witness(outside)
    try:
        yield w
    finally:
        w.close()


def unfinished_in(home: Path) -> Snapshot:
    """The store's unfinished records, read with the server down (a real SqliteStore)."""

    async def read() -> Snapshot:
        store = await SqliteStore.open(home / "squall.db")
        try:
            listed = await store.activations.unfinished("", 100_000)
        finally:
            await store.close()
        return Snapshot(
            {u.record.activation_id for u in listed if not u.started},
            {u.record.activation_id for u in listed if u.started},
        )

    return asyncio.run(read())


def create_entities(client: httpx.Client, witness: Witness) -> None:
    params = [{"key": "witness", "value": witness.url}, {"key": "sleepMs", "value": SLEEP_MS}]
    action = {
        "exec": {"kind": "nodejs:default", "code": WITNESS_JS},
        "parameters": params,
        "limits": {"memory": 128},
    }
    assert client.put("/namespaces/_/actions/seen", json=action).status_code == 200
    sequence = {"exec": {"kind": "sequence", "components": ["/_/seen", "/_/seen"]}}
    assert client.put("/namespaces/_/actions/twice", json=sequence).status_code == 200
    assert client.put("/namespaces/_/triggers/tick", json={}).status_code == 200
    rule = {"trigger": "/_/tick", "action": "/_/seen"}
    assert client.put("/namespaces/_/rules/on-tick", json=rule).status_code == 200
    # Once blocking: warm, and the witness is reachable from the sandbox
    r = client.post("/namespaces/_/actions/seen?blocking=true&result=true", json={})
    assert r.status_code == 200 and "id" in r.json(), r.text


def load(server: Standalone, accepted: Accepted, stop: threading.Event) -> None:
    """One client's mixed load until ``stop`` (or the server dies): every id the server
    answered with is recorded."""
    kinds: list[tuple[str, str, dict[str, str]]] = [
        ("nonblocking", "/namespaces/_/actions/seen", {}),
        ("blocking", "/namespaces/_/actions/seen", {"blocking": "true", "timeout": "1000"}),
        ("sequences", "/namespaces/_/actions/twice", {}),
        ("fires", "/namespaces/_/triggers/tick", {}),
    ]
    with server.client(timeout=10) as client:
        while not stop.is_set():
            kind, path, query = random.choice(kinds)
            try:
                r = client.post(path, params=query, json={})
            except httpx.TransportError:
                return  # killed
            if r.status_code in (200, 202):
                accepted.add(kind, r.json()["activationId"])


def run_round(server: Standalone, accepted: Accepted, rng: random.Random) -> None:
    """A burst of non-blocking invokes (a queue), mixed load, and SIGKILL at a random
    moment."""
    with server.client() as client:
        for _ in range(BURST):
            r = client.post("/namespaces/_/actions/seen", json={})
            assert r.status_code == 202, r.text
            accepted.add("nonblocking", r.json()["activationId"])
    stop = threading.Event()
    clients = [threading.Thread(target=load, args=(server, accepted, stop)) for _ in range(3)]
    for thread in clients:
        thread.start()
    # Not a wait for a result: the moment of the kill is what the test varies.
    time.sleep(rng.uniform(0.1, 1.5))
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(30)
    stop.set()
    for thread in clients:
        thread.join(30)


def record_of(client: httpx.Client, activation_id: str) -> dict[str, Any] | None:
    r = client.get(f"/namespaces/_/activations/{activation_id}")
    assert r.status_code == 200, f"{activation_id}: {r.status_code} {r.text}"
    record: dict[str, Any] = r.json()
    return None if record["response"]["status"] == "pending" else record


def final_records(client: httpx.Client, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The final record of every id, polled with a deadline (a pending one is waited for;
    an unknown one fails at once)."""
    out: dict[str, dict[str, Any]] = {}

    def probe() -> dict[str, dict[str, Any]] | None:
        for activation_id in sorted(ids - out.keys()):
            record = record_of(client, activation_id)
            if record is not None:
                out[activation_id] = record
        return out if out.keys() == ids else None

    return poll(probe, RECOVERY_DEADLINE_S, interval_s=0.2, what="every accepted id final")


def rule_activations(fire: dict[str, Any]) -> set[str]:
    """The ids of the rule activations a trigger's record lists (one JSON line each)."""
    return {str(json.loads(line)["activationId"]) for line in fire["logs"]}


def test_sigkill_under_mixed_load_ends_every_accepted_activation_exactly_once(
    tmp_path: Path, witness: Witness
) -> None:
    rng = random.Random()
    home = tmp_path / "home"
    accepted = Accepted()
    snapshots: list[Snapshot] = []
    server = start(home, keep_warm_s=60, env=ENV)
    try:
        with server.client() as client:
            create_entities(client, witness)
        for _ in range(ROUNDS):
            # Given a server under mixed load, killed at a random moment
            run_round(server, accepted, rng)
            snapshots.append(unfinished_in(home))
            # When it starts again on the same home
            server = start(home, keep_warm_s=60, env=ENV)
            with server.client() as client:
                final_records(client, accepted.all())
        # Then, once every accepted id is final
        with server.client() as client:
            records = final_records(client, accepted.all())
            for fire in accepted.fires:
                # the rule activations of the fires count as accepted too
                extra = rule_activations(records[fire]) - records.keys()
                records.update(final_records(client, extra))
            sequence_steps = {
                step for s in accepted.sequences for step in records[s]["logs"]
            } - records.keys()
            records.update(final_records(client, sequence_steps))
            # and so does whatever the store held unfinished at a kill (blocking
            # activations whose callers the kill cut off included)
            held = set().union(*(s.queued | s.started for s in snapshots)) - records.keys()
            records.update(final_records(client, held))
        server.stop_cleanly()
    finally:
        if server.running():
            server.process.kill()
            server.process.wait(30)
    # Nothing is left unfinished in the store
    after = unfinished_in(home)
    assert after.queued == set() and after.started == set(), after
    # No activation ran twice
    twice = {k: n for k, n in witness.calls.items() if n > 1}
    assert not twice, twice
    queued = set().union(*(s.queued for s in snapshots))
    started = set().union(*(s.started for s in snapshots))
    # The runs of the action (not the sequences' or the trigger's own records)
    runs = {i for i, r in records.items() if r["name"] == "seen"}
    for activation_id in queued & records.keys():
        record = records[activation_id]
        # What never started ran after the restart (a primitive: seen once by the witness)
        assert record["response"]["status"] == "success", record
        if activation_id in runs:
            assert witness.calls[activation_id] == 1, record
    for activation_id in started & records.keys():
        # What had started ended with the error that says why (and ran at most once)
        record = records[activation_id]
        assert record["response"]["status"] == "whisk internal error", record
        assert record["response"]["result"] == {"error": INTERRUPTED}, record
    for activation_id in runs:
        if records[activation_id]["response"]["status"] == "success":
            assert witness.calls[activation_id] == 1, records[activation_id]
    # And the kills did hit queued work, which was recovered rather than failed
    assert queued & records.keys(), [(len(s.queued), len(s.started)) for s in snapshots]
