"""The PostgreSQL store beyond the contract suite: migrations, and outages — a failure
to reach the database is a ProviderError (the API's 5xx, never a 401 or 404), and the
pool recovers by itself once the server is back."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
from pgsupport import PG_DSN, Relay

from squall.entities.activation import Activation, ActivationResponse
from squall.errors import NotFound, ProviderError
from squall.store.contracts import Subject
from squall.store.postgres import PostgresStore
from squall.store.postgres_schema import SCHEMA_VERSION, schema_version

pytestmark = pytest.mark.anyio

NS = "guest"


async def _eventually_works(store: PostgresStore, subject: Subject) -> None:
    """Poll (with a deadline) until a request goes through again."""
    assert subject.key is not None
    deadline = time.monotonic() + 30
    while True:
        try:
            assert await store.auth.authenticate(subject.uuid, subject.key) == Subject(
                NS, subject.uuid
            )
            return
        except ProviderError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_migrations_run_once_and_record_their_version(schema: str) -> None:
    # Given a store opened on a new schema
    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        # Then the schema is at the current version, recorded once per migration
        assert await schema_version(store.database) == SCHEMA_VERSION
    # When it is opened again / Then nothing is applied twice
    async with await PostgresStore.open(PG_DSN, schema=schema) as store:
        assert await schema_version(store.database) == SCHEMA_VERSION
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        rows = conn.execute(f"SELECT version FROM {schema}.squall_schema_version").fetchall()
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_newer_schema_is_refused(schema: str) -> None:
    # Given a schema migrated by a newer Squall
    await (await PostgresStore.open(PG_DSN, schema=schema)).close()
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {schema}.squall_schema_version (version) VALUES (%s)",
            (SCHEMA_VERSION + 1,),
        )
    # When this one opens it / Then it refuses rather than misreading it
    with pytest.raises(ProviderError, match="newer"):
        await PostgresStore.open(PG_DSN, schema=schema)


async def test_schema_from_the_url_options(schema: str) -> None:
    # Given a URL whose options set the search_path to an existing schema
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_DSN}?options=-csearch_path%3D{schema}"
    # When the store is opened with it / Then its tables are created in that schema
    async with await PostgresStore.open(url) as store:
        await store.entities.put(NS, "actions", "a", {}, None)
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        count = conn.execute(f"SELECT count(*) FROM {schema}.entities").fetchone()
    assert count == (1,)


async def test_unreachable_server_fails_to_open_with_provider_error() -> None:
    # Given a port nothing listens on / When opening / Then ProviderError, promptly
    relay = Relay()  # never started
    with pytest.raises(ProviderError, match="postgresql"):
        await PostgresStore.open(relay.dsn, timeout=1.0)


async def test_pool_survives_its_backends_being_terminated(schema: str) -> None:
    # Given a store with a few pooled connections, all used, and a subject
    name = f"squall_test_{uuid.uuid4().hex[:8]}"
    url = f"{PG_DSN}?application_name={name}"
    async with await PostgresStore.open(url, schema=schema, min_size=3, max_size=3) as store:
        subject = await store.auth.create_subject(NS)
        await asyncio.gather(*(store.entities.count(NS, "actions") for _ in range(6)))
        # When the server terminates every backend of the pool (as a restart would)
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                " FROM pg_stat_activity WHERE application_name = %s",
                (name,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        # Then requests go on working: dead idle connections are replaced on checkout
        assert subject.key is not None
        results = await asyncio.gather(
            *(store.auth.authenticate(subject.uuid, subject.key) for _ in range(6))
        )
        assert results == [Subject(NS, subject.uuid)] * 6
        with pytest.raises(NotFound):
            await store.entities.get(NS, "actions", "missing")


async def test_connections_dropped_while_idle_are_replaced_before_use(schema: str) -> None:
    # Given a store whose three pooled connections go through a relay, all used once
    relay = Relay()
    await relay.restore()
    try:
        store = await PostgresStore.open(relay.dsn, schema=schema, min_size=3, max_size=3)
        async with store:
            await asyncio.gather(*(store.entities.count(NS, "actions") for _ in range(6)))
            # When the network drops them while they are idle, and comes back at once
            await relay.cut()
            await relay.restore()
            # Then even writes that are never retried (a claim could not be repeated
            # safely) succeed: a dead connection is noticed before a statement is sent
            claims = await asyncio.gather(*(store.schedules.claim(f"t{i}", 1) for i in range(6)))
            assert claims == [True] * 6
            created = await store.entities.put(NS, "actions", "a", {}, None)
            assert await store.entities.get(NS, "actions", "a") == created
    finally:
        await relay.close()


async def test_outage_gives_provider_errors_then_service_resumes(schema: str) -> None:
    # Given a store reaching PostgreSQL through a relay, and a subject
    relay = Relay()
    await relay.restore()
    try:
        store = await PostgresStore.open(relay.dsn, schema=schema, timeout=1.0, max_size=3)
        async with store:
            subject = await store.auth.create_subject(NS)
            assert subject.key is not None
            # When the database becomes unreachable (connections dropped and refused)
            await relay.cut()
            # Then every kind of call raises ProviderError: authentication never answers
            # "wrong key", lookups never answer "not found"
            with pytest.raises(ProviderError):
                await store.auth.authenticate(subject.uuid, subject.key)
            with pytest.raises(ProviderError):
                await store.entities.get(NS, "actions", "a")
            with pytest.raises(ProviderError):
                await store.activations.put(
                    Activation(namespace=NS, name="a", activation_id="1", start=1,
                               response=ActivationResponse.ok({}))
                )  # fmt: skip
            with pytest.raises(ProviderError):
                await store.schedules.claim("tick", 1)
            # When the database is reachable again
            await relay.restore()
            # Then requests succeed again without reopening the store
            await _eventually_works(store, subject)
            await store.entities.put(NS, "actions", "a", {}, None)
            assert await store.entities.count(NS, "actions") == 1
    finally:
        await relay.close()


async def test_closed_store_raises_store_is_closed(schema: str) -> None:
    store = await PostgresStore.open(PG_DSN, schema=schema)
    await store.close()
    await store.close()
    with pytest.raises(ProviderError, match="store is closed"):
        await store.auth.authenticate("u", "k")
