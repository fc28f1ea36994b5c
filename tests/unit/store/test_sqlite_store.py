"""What only the SQLite provider promises: settings, schema versioning, stored forms."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from squall.entities.activation import Activation, ActivationResponse, ended
from squall.errors import BadRequest, ProviderError
from squall.store import keys, sqlite_schema
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


def raw(path: Path) -> closing[sqlite3.Connection]:
    """A second, plain connection to inspect what the store wrote (closed on exit)."""
    return closing(sqlite3.connect(path, isolation_level=None))


def tables(path: Path) -> list[str]:
    with raw(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master ORDER BY type, name").fetchall()
    return [name for (name,) in rows]


async def test_connection_settings(tmp_path: Path) -> None:
    # Given a file-backed store
    async with await SqliteStore.open(tmp_path / "s.db") as store:
        conn = store._db.conn
        # Then it runs in WAL mode, without fsync per commit, with foreign keys and a
        # busy timeout, and without implicit transactions
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (sqlite_schema.BUSY_TIMEOUT_MS,)
        assert conn.isolation_level is None


async def test_schema_version_is_recorded_and_reopen_is_idempotent(tmp_path: Path) -> None:
    # Given a new database file
    path = tmp_path / "home" / "squall.db"
    store = await SqliteStore.open(path)
    await store.entities.put("guest", "actions", "a", {}, None)
    await store.close()
    # Then its parent directory was created and the schema version recorded
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (sqlite_schema.SCHEMA_VERSION,)
    before = tables(path)
    assert {"entities", "activations", "subjects"} <= set(before)
    # When it is opened again, and migrated once more by hand
    store = await SqliteStore.open(path)
    assert sqlite_schema.migrate(store._db) == sqlite_schema.SCHEMA_VERSION
    # Then nothing changed and the data is intact
    assert await store.entities.count("guest", "actions") == 1
    await store.close()
    assert tables(path) == before


async def test_failed_migration_rolls_back_to_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a schema whose second migration fails halfway through
    broken = (
        *sqlite_schema.MIGRATIONS,
        ("CREATE TABLE half_done (x)", "THIS IS NOT SQL"),
    )
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", broken)
    monkeypatch.setattr(sqlite_schema, "SCHEMA_VERSION", len(broken))
    path = tmp_path / "s.db"
    # When the file is opened / Then it fails as a provider error
    with pytest.raises(ProviderError):
        await SqliteStore.open(path)
    # And the file is left at the last complete version, without half of the next one
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(broken) - 1,)
    assert "half_done" not in tables(path)


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    # Given a file written by a newer Squall
    path = tmp_path / "s.db"
    with raw(path) as conn:
        conn.execute(f"PRAGMA user_version = {sqlite_schema.SCHEMA_VERSION + 1}")
    # When it is opened / Then ProviderError instead of misreading it
    with pytest.raises(ProviderError, match="newer"):
        await SqliteStore.open(path)


async def test_unopenable_path_is_a_provider_error(tmp_path: Path) -> None:
    # Given a path that is a directory / When opened / Then ProviderError
    with pytest.raises(ProviderError):
        await SqliteStore.open(tmp_path)


async def test_stored_key_is_a_salted_hash(tmp_path: Path) -> None:
    # Given a subject created with a known key
    path = tmp_path / "s.db"
    async with await SqliteStore.open(path) as store:
        created = await store.auth.create_subject("guest")
    assert created.key is not None
    # Then the database holds a salted hash, not the key
    with raw(path) as conn:
        (stored,) = conn.execute("SELECT key_hash FROM subjects").fetchone()
    assert created.key not in stored
    assert stored.startswith("sha256$")
    assert keys.verify_key(created.key, stored)


async def test_revisions_count_writes(tmp_path: Path) -> None:
    # Given a document written three times
    async with await SqliteStore.open(":memory:") as store:
        first = await store.entities.put("guest", "actions", "a", {}, None)
        second = await store.entities.put("guest", "actions", "a", {}, first.rev)
        third = await store.entities.put("guest", "actions", "a", {}, second.rev)
    # Then revisions are "<counter>-<16 hex>" with the counter counting the writes
    for n, doc in enumerate((first, second, third), start=1):
        assert re.fullmatch(rf"{n}-[0-9a-f]{{16}}", doc.rev)


async def test_entity_and_activation_index_columns(tmp_path: Path) -> None:
    # Given an action in a package and activations of a top-level and a package action
    path = tmp_path / "s.db"
    async with await SqliteStore.open(path) as store:
        await store.entities.put("guest", "actions", "pkg/hello", {}, None)
        paths = (("1", "guest/hello"), ("2", "guest/pkg/hello"), ("3", "/guest/pkg/hello"))
        for activation_id, entity_path in paths:
            await store.activations.put(
                Activation(
                    namespace="guest",
                    name="hello",
                    activation_id=activation_id,
                    start=10,
                    response=ActivationResponse.ok({}),
                    annotations=[{"key": "path", "value": entity_path}],
                )
            )
    # Then the package and entity path columns are derived from name and annotation
    with raw(path) as conn:
        assert conn.execute("SELECT package FROM entities").fetchall() == [("pkg",)]
        names = conn.execute("SELECT activation_id, name FROM activations ORDER BY 1")
        assert names.fetchall() == [("1", "hello"), ("2", "pkg/hello"), ("3", "pkg/hello")]


async def test_a_row_that_holds_no_record_is_a_provider_error(tmp_path: Path) -> None:
    # Given a row whose body is JSON but not an activation record (written by hand)
    path = tmp_path / "s.db"
    async with await SqliteStore.open(path):
        pass  # the schema
    with raw(path) as conn:
        conn.execute(
            "INSERT INTO activations (activation_id, namespace, name, start, body)"
            " VALUES (?, 'guest', 'a', 1, ?)",
            ("a" * 32, '{"namespace": "guest", "start": "soon"}'),
        )
    # When it is read / Then a ProviderError says so (never a half-read record)
    async with await SqliteStore.open(path) as store:
        with pytest.raises(ProviderError, match="unreadable activation record"):
            await store.activations.get("guest", "a" * 32)


async def test_malformed_calls_are_rejected_before_writing() -> None:
    async with await SqliteStore.open(":memory:") as store:
        # Given negative paging / Then ValueError
        with pytest.raises(ValueError):
            await store.entities.list("guest", "actions", skip=-1)
        # Given a uuid that would break "uuid:key" parsing, or an empty key / Then 400
        with pytest.raises(BadRequest):
            await store.auth.create_subject("guest", uuid="a:b")
        with pytest.raises(BadRequest):
            await store.auth.create_subject("guest", key="")
        # Given a body that is not JSON / Then TypeError and nothing stored
        with pytest.raises(TypeError):
            await store.entities.put("guest", "actions", "a", {"x": object()}, None)
        assert await store.entities.count("guest", "actions") == 0
        assert await store.auth.list_subjects() == []


def _pending_body(activation_id: str) -> str:
    return (
        f'{{"namespace":"guest","name":"a","activationId":"{activation_id}","start":1,'
        '"response":{"status":"pending","success":false,"result":{}}}'
    )


async def test_records_left_pending_by_an_older_squall_are_unfinished_after_upgrade(
    tmp_path: Path,
) -> None:
    # Given a file of the schema before crash recovery, with a pending and a final record
    path = tmp_path / "s.db"
    before = sqlite_schema.MIGRATIONS.index(
        next(m for m in sqlite_schema.MIGRATIONS if any("ADD COLUMN state" in s for s in m))
    )
    with raw(path) as conn:
        for migration in sqlite_schema.MIGRATIONS[:before]:
            for statement in migration:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {before}")
        insert = "INSERT INTO activations VALUES (?, 'guest', 'a', 1, ?)"
        conn.execute(insert, ("a" * 32, _pending_body("a" * 32)))
        conn.execute(insert, ("b" * 32, _pending_body("b" * 32).replace("pending", "success")))
    # When this Squall opens it
    store = await SqliteStore.open(path)
    try:
        # Then the pending one is unfinished — queued, with nothing to run it from — and
        # the final one is not
        [left] = await store.activations.unfinished("", 10)
        assert (left.record.activation_id, left.started, left.message) == ("a" * 32, False, None)
        # And a pending record written by an older Squall after the upgrade (no state)
        # can still be started once, and ended
        with raw(path) as conn:
            conn.execute(
                "INSERT INTO activations (activation_id, namespace, name, start, body)"
                " VALUES (?, 'guest', 'a', 1, ?)",
                ("c" * 32, _pending_body("c" * 32)),
            )
        pending = await store.activations.get("guest", "c" * 32)
        assert await store.activations.start(pending) is True
        assert await store.activations.start(pending) is False
        final = ended(pending, ActivationResponse.whisk_error("lost"))
        assert await store.activations.put_unless_final(final) is True
    finally:
        await store.close()
