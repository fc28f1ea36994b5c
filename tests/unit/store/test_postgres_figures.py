"""The dashboard's figures (``status``, ``duration``, ``init_time``) of PostgreSQL rows: this
version's store gives them with every write (``postgres_activations.figures``) and the
``activation_figures`` trigger leaves them; a writer that does not say it gives them (an
older Squall during a rolling upgrade) still gets them from the trigger."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from pgsupport import PG_DSN

from squall.entities.activation import ActivationResponse, final_record, pending_record
from squall.store.postgres import PostgresStore
from squall.store.postgres_schema import FIGURES_GIVEN
from squall.store.records import dumps_record

pytestmark = pytest.mark.anyio

NS = "guest"
FIGURES = "SELECT activation_id, status, duration, init_time FROM activations ORDER BY 1"


def _final(activation_id: str, annotations: list[dict[str, Any]], ok: bool = True) -> Any:
    response = ActivationResponse.ok({}) if ok else ActivationResponse.ok({"error": "no"})
    return final_record(
        namespace=NS,
        name="noop",
        subject=NS,
        activation_id=activation_id,
        start=1_000,
        end=1_007,
        response=response,
        annotations=[{"key": "path", "value": f"{NS}/noop"}, *annotations],
    )


def _records() -> list[Any]:
    ids = sorted(uuid.uuid4().hex for _ in range(6))
    return [
        _final(ids[0], [{"key": "initTime", "value": 12}]),
        _final(ids[1], [{"key": "initTime", "value": 2.5}], ok=False),
        # Not a number: skipped for the next initTime that is one
        _final(ids[2], [{"key": "initTime", "value": True}, {"key": "initTime", "value": 3}]),
        _final(ids[3], [{"key": "initTime", "value": "7"}]),
        _final(ids[4], []),
        pending_record(
            namespace=NS,
            subject=NS,
            activation_id=ids[5],
            name="noop",
            path=f"{NS}/noop",
            version="0.0.1",
            accepted_ms=1_000,
        ),
    ]


def _rows(schema: str, query: str, options: str = "") -> list[tuple[Any, ...]]:
    options = f"-c search_path={schema} {options}".strip()
    with psycopg.connect(PG_DSN, autocommit=True, options=options) as conn:
        return list(conn.execute(query).fetchall())


async def test_the_figures_this_store_gives_are_the_triggers(schema: str) -> None:
    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        # Given records of every shape, written by this store (figures given)
        records = _records()
        for record in records[:3]:
            await store.activations.start(record)  # as pending, then final
            await store.activations.put(record)
        for record in records[3:]:
            await store.activations.put(record)
        given = _rows(schema, FIGURES)
        # When the trigger computes them again (a connection that gives none)
        _rows(schema, "UPDATE activations SET body = body RETURNING 1")
        computed = _rows(schema, FIGURES)
    # Then they are the same, and what the records say
    assert given == computed
    assert [row[1:] for row in given] == [
        ("success", 7.0, 12.0),
        ("application error", 7.0, 2.5),
        ("success", 7.0, 3.0),
        ("success", 7.0, None),
        ("success", 7.0, None),
        ("pending", 0.0, None),
    ]


async def test_a_writer_that_gives_no_figures_gets_them_from_the_trigger(schema: str) -> None:
    async with await PostgresStore.open(PG_DSN, schema=schema):
        pass  # the schema, migrated
    # Given a record written as an older Squall writes it (no figures, no option)
    record = _final(uuid.uuid4().hex, [{"key": "initTime", "value": 40}], ok=False)
    _rows(
        schema,
        "INSERT INTO activations (activation_id, namespace, name, start, body) VALUES"
        f" ('{record.activation_id}', '{NS}', 'noop', 1000, '{dumps_record(record)}')"
        " RETURNING 1",
    )
    # Then the trigger filled them in
    assert _rows(schema, FIGURES) == [(record.activation_id, "application error", 7.0, 40.0)]
    # And for a writer that says it gives them, the trigger does not run
    quiet = _final(uuid.uuid4().hex, [{"key": "initTime", "value": 40}])
    _rows(
        schema,
        "INSERT INTO activations (activation_id, namespace, name, start, body) VALUES"
        f" ('{quiet.activation_id}', '{NS}', 'noop', 1000, '{dumps_record(quiet)}')"
        " RETURNING 1",
        FIGURES_GIVEN,
    )
    assert (quiet.activation_id, None, None, None) in _rows(schema, FIGURES)
