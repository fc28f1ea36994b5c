"""open_store: which provider a Settings' store_url opens."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from pgsupport import PG_DSN, fresh_schema, require_postgres

from squall.config import Settings
from squall.errors import ConfigError
from squall.store.factory import open_store
from squall.store.postgres import PostgresStore
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


async def test_no_url_opens_sqlite_in_home(tmp_path: Path) -> None:
    # Given settings without a store URL / When opening / Then SQLite at db_path
    settings = Settings(home=tmp_path)
    store = await open_store(settings)
    try:
        assert isinstance(store.inner, SqliteStore)
        assert store.inner.path == str(settings.db_path)
        assert settings.db_path.exists()
    finally:
        await store.close()


async def test_sqlite_url_opens_that_file(tmp_path: Path) -> None:
    # Given an absolute sqlite:/// URL / Then that file is the store
    target = tmp_path / "elsewhere" / "s.db"
    store = await open_store(Settings(home=tmp_path, store_url=f"sqlite:///{target}"))
    try:
        assert isinstance(store.inner, SqliteStore)
        await store.entities.put("guest", "actions", "a", {}, None)
    finally:
        await store.close()
    assert target.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/db", "'mysql'"),
        ("redis://secret@localhost", "'redis'"),
        ("sqlite:///", "names no file"),
    ],
)
async def test_unusable_urls_are_config_errors(tmp_path: Path, url: str, message: str) -> None:
    # When the URL names no provider Squall has / Then a ConfigError that says so
    with pytest.raises(ConfigError, match=message) as caught:
        await open_store(Settings(home=tmp_path, store_url=url))
    # And it never repeats what follows the scheme (it may hold a password)
    assert "secret" not in caught.value.message


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_postgres_url_opens_postgres(tmp_path: Path, scheme: str) -> None:
    # Given a PostgreSQL URL selecting a schema of its own
    require_postgres()
    with fresh_schema() as schema:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{scheme}://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        # When opening / Then a migrated PostgreSQL store
        store = await open_store(Settings(home=tmp_path, store_url=url))
        try:
            assert isinstance(store.inner, PostgresStore)
            assert await store.auth.list_subjects() == []
        finally:
            await store.close()
