"""What the crash-recovery scenarios share: mixed load, the store's unfinished records
at a kill, every accepted id's final record, and what a run came to.

Used by ``tests/integration/test_crash_recovery.py`` (which asserts on it) and by
``bench/crash_recovery.py`` (which repeats the scenarios and counts): the load is the
same, so the figures are those of the tested scenario.

Every client here is an ``httpx.Client`` whose base URL ends in ``/api/v1`` (a
standalone's or a controller's). The actions run :data:`netsupport.WITNESS_JS`, so a
:class:`~netsupport.Witness` counts every run of every activation id and keeps the
gateway (``__OW_API_HOST``) of the invoker that ran it.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from netsupport import WITNESS_JS

from squall.bus.messages import ActivationMessage
from squall.config import Settings
from squall.controller.auth import Identity
from squall.controller.composition import Run
from squall.entities.action import Action
from squall.entities.activation import new_activation_id, now_ms
from squall.entities.names import EntityPath
from squall.store.factory import open_provider

#: The action every kind of load runs, the two-step sequence of it, and the trigger
#: whose rule runs it.
ACTION, SEQUENCE, TRIGGER = "seen", "twice", "tick"
#: (kind, path under /api/v1, query) of each kind of request the mixed load sends.
KINDS: list[tuple[str, str, dict[str, str]]] = [
    ("nonblocking", f"/namespaces/_/actions/{ACTION}", {}),
    ("blocking", f"/namespaces/_/actions/{ACTION}", {"blocking": "true", "timeout": "1000"}),
    ("sequences", f"/namespaces/_/actions/{SEQUENCE}", {}),
    ("fires", f"/namespaces/_/triggers/{TRIGGER}", {}),
]
#: A bound on one client's requests, whatever stops it (the kill usually does first).
MAX_REQUESTS = 2000


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
        with self.lock:
            return self.nonblocking | self.blocking | self.sequences | self.fires


@dataclass
class Snapshot:
    """What the store held unfinished at a moment (right after a kill)."""

    queued: set[str]
    started: set[str]

    def __sub__(self, before: Snapshot) -> Snapshot:
        """What is here and was not unfinished ``before`` (left by an earlier kill)."""
        return Snapshot(self.queued - before.all(), self.started - before.all())

    def all(self) -> set[str]:
        return self.queued | self.started


def create_entities(client: httpx.Client, witness_url: str, sleep_ms: int) -> None:
    """The action, a two-step sequence of it, and a trigger whose rule runs it; then one
    blocking invoke (warm, and the witness is reachable from a sandbox)."""
    params = [{"key": "witness", "value": witness_url}, {"key": "sleepMs", "value": sleep_ms}]
    action = {
        "exec": {"kind": "nodejs:default", "code": WITNESS_JS},
        "parameters": params,
        "limits": {"memory": 128, "timeout": 60000},
    }
    entities = [
        (f"/namespaces/_/actions/{ACTION}", action),
        (
            f"/namespaces/_/actions/{SEQUENCE}",
            {"exec": {"kind": "sequence", "components": [f"/_/{ACTION}", f"/_/{ACTION}"]}},
        ),
        (f"/namespaces/_/triggers/{TRIGGER}", {}),
        ("/namespaces/_/rules/on-tick", {"trigger": f"/_/{TRIGGER}", "action": f"/_/{ACTION}"}),
    ]
    for path, body in entities:
        r = client.put(path, params={"overwrite": "true"}, json=body)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
    r = client.post(f"/namespaces/_/actions/{ACTION}?blocking=true&result=true", json={})
    assert r.status_code == 200 and "id" in r.json(), r.text


def burst(client: httpx.Client, accepted: Accepted, count: int) -> None:
    """``count`` non-blocking invokes at once: more than the invoker runs at a time, so
    some wait (a queue for the kill to hit)."""
    for _ in range(count):
        r = client.post(f"/namespaces/_/actions/{ACTION}", json={})
        assert r.status_code == 202, r.text
        accepted.add("nonblocking", r.json()["activationId"])


def mixed_load(
    client: httpx.Client, accepted: Accepted, stop: threading.Event, seed: int | None = None
) -> None:
    """One client's mixed load until ``stop`` (or its server dies, or ``MAX_REQUESTS``):
    every id a server answered with is recorded. A controller that stops answering ends
    the load of this client only when ``stop`` is set (a cluster's other controller may
    still serve: the caller gives each controller its clients)."""
    rng = random.Random(seed)
    for _ in range(MAX_REQUESTS):
        if stop.is_set():
            return
        kind, path, query = rng.choice(KINDS)
        try:
            r = client.post(path, params=query, json={})
        except httpx.TransportError:
            return  # killed
        if r.status_code in (200, 202):
            accepted.add(kind, r.json()["activationId"])


def leave_unstarted_run(
    store_url: str, home: str, identity: tuple[str, str], name: str, owner: str
) -> str:
    """What a controller's kill between accepting a topmost sequence and starting it
    leaves: its pending record and message, owned by ``owner`` (a controller id and an
    incarnation, as the composer writes them), written with the store's own provider.
    ``identity`` is the namespace and its uuid; returns the activation id."""

    async def write() -> str:
        settings = Settings.from_env({"SQUALL_STORE_URL": store_url, "SQUALL_HOME": home})
        store = await open_provider(settings)
        try:
            namespace, uuid = identity
            doc = await store.entities.get(namespace, "actions", name)
            action = Action.from_store(
                EntityPath(namespace, "", name), doc.body, doc.rev, doc.updated
            )
            run = Run(
                Identity(namespace, uuid), action, new_activation_id(), "tx", None, True, now_ms()
            )
            message = ActivationMessage(
                transid=run.txid,
                activation_id=run.activation_id,
                namespace=namespace,
                subject=namespace,
                action=action.path.fqn,
                revision=action.rev,
                content={},
                blocking=False,
                controller=owner.split("/", 1)[0],
                accepted_ms=run.start,
            )
            await store.activations.put_pending(run.pending(), message.to_bytes(), owner)
        finally:
            await store.close()
        return run.activation_id

    return asyncio.run(write())


def unfinished(store_url: str, home: str) -> Snapshot:
    """The store's unfinished records now, read with the store's own provider (the
    SQLite file of ``home`` when ``store_url`` is empty)."""

    async def read() -> Snapshot:
        settings = Settings.from_env({"SQUALL_STORE_URL": store_url, "SQUALL_HOME": home})
        store = await open_provider(settings)
        try:
            listed = await store.activations.unfinished("", 100_000)
        finally:
            await store.close()
        return Snapshot(
            {u.record.activation_id for u in listed if not u.started},
            {u.record.activation_id for u in listed if u.started},
        )

    return asyncio.run(read())


@dataclass
class Finals:
    """Every asked id's final record; what was still pending or unknown at the deadline."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)
    #: The record of each id still pending, as last read (evidence).
    last: dict[str, dict[str, Any]] = field(default_factory=dict)


def final_records(client: httpx.Client, ids: set[str], deadline_s: float) -> Finals:
    """Polls every id until its record is final, up to ``deadline_s``: what is still
    pending (or answers 404) then is reported, not waited for."""
    out = Finals()
    end = time.monotonic() + deadline_s
    while True:
        out.pending, out.unknown = set(), set()
        for activation_id in sorted(ids - out.records.keys()):
            r = client.get(f"/namespaces/_/activations/{activation_id}")
            if r.status_code == 404:
                out.unknown.add(activation_id)
                continue
            assert r.status_code == 200, f"{activation_id}: {r.status_code} {r.text}"
            record: dict[str, Any] = r.json()
            if record["response"]["status"] == "pending":
                out.pending.add(activation_id)
                out.last[activation_id] = record
            else:
                out.records[activation_id] = record
        if not (out.pending or out.unknown) or time.monotonic() > end:
            return out
        time.sleep(0.2)


def rule_activations(fire: dict[str, Any]) -> set[str]:
    """The ids of the rule activations a trigger's record lists (one JSON line each)."""
    return {str(json.loads(line)["activationId"]) for line in fire["logs"]}


def every_final(
    client: httpx.Client, accepted: Accepted, held: set[str], deadline_s: float
) -> Finals:
    """The final records of every accepted id, of the activations they made (the rule
    activations of the fires, the steps of the sequences), and of ``held`` (what the
    store held unfinished at a kill: blocking activations whose callers the kill cut off
    included)."""
    finals = final_records(client, accepted.all(), deadline_s)
    made: set[str] = set()
    for activation_id, record in finals.records.items():
        if activation_id in accepted.fires:
            made |= rule_activations(record)
        elif activation_id in accepted.sequences:
            made |= set(record["logs"])
    # What was waited for already is not waited for again.
    asked = finals.records.keys() | finals.pending | finals.unknown
    more = final_records(client, (made | held) - asked, deadline_s)
    finals.records.update(more.records)
    finals.pending |= more.pending
    finals.unknown |= more.unknown
    finals.last.update(more.last)
    return finals


def gateway(api_host: str) -> str:
    """The host part of an ``__OW_API_HOST`` (an invoker's sandbox gateway)."""
    return urlsplit(api_host).hostname or api_host


@dataclass
class Outcome:
    """What one kill came to, for the ids it concerns."""

    accepted: int
    final: int
    pending: list[str]
    lost: list[str]  # accepted (or held) ids no record was found for
    twice: dict[str, int]  # ids the witness saw run more than once
    queued: int  # never started at the kill
    queued_ran: dict[str, int]  # of those, ran once after: by who ran them
    queued_failed: dict[str, str]  # of those, ended otherwise: id → status and result
    started: int  # started at the kill
    started_error: dict[str, str]  # of those, ended as whisk internal error: id → message
    started_ok: int  # of those, ended with success (a run that was not cut off)

    def problems(self) -> list[str]:
        """What breaks the promise: an id pending or lost, run twice, never-started work
        not run."""
        return [
            f"{name}: {value}"
            for name, value in [
                ("pending", self.pending),
                ("lost", self.lost),
                ("ran twice", self.twice),
                ("never started, not run", self.queued_failed),
            ]
            if value
        ]


def outcome(
    accepted: set[str],
    finals: Finals,
    calls: Mapping[str, int],
    via: Mapping[str, list[str]],
    names: Mapping[str, str],
    at_kill: Snapshot,
    after: Snapshot,
) -> Outcome:
    """Counts one kill's ids (the witness's ``calls`` and ``via`` may hold other runs').
    ``names`` maps an invoker's gateway to its name; one not in it is shown as is."""
    records = finals.records
    ids = accepted | records.keys() | finals.pending | finals.unknown
    queued = at_kill.queued & (records.keys() | finals.pending)
    started = at_kill.started & (records.keys() | finals.pending)
    ran: Counter[str] = Counter()
    failed: dict[str, str] = {}
    for i in sorted(queued & records.keys()):
        response = records[i]["response"]
        if response["status"] == "success" and calls.get(i, 0) <= 1:
            if records[i]["name"] != ACTION:
                runner = "(sequence)"  # no run of its own: its steps are counted apart
            else:
                seen = [gateway(v) for v in via.get(i, [])]
                runner = names.get(seen[0], seen[0]) if seen else "(unseen by the witness)"
            ran[runner] += 1
        else:
            failed[i] = f"{response['status']}: {json.dumps(response.get('result'))}"
    errors = {
        i: str((records[i]["response"].get("result") or {}).get("error"))
        for i in sorted(started & records.keys())
        if records[i]["response"]["status"] == "whisk internal error"
    }
    ok = sum(1 for i in started & records.keys() if records[i]["response"]["status"] == "success")
    return Outcome(
        accepted=len(accepted),
        final=len(records),
        pending=sorted(finals.pending | after.queued | after.started),
        lost=sorted(finals.unknown),
        twice={k: n for k, n in calls.items() if n > 1 and k in ids},
        queued=len(queued),
        queued_ran=dict(ran),
        queued_failed=failed,
        started=len(started),
        started_error=errors,
        started_ok=ok,
    )
