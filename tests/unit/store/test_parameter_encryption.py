"""Parameters encrypted at rest: the key ring, the encrypting store over SQLite and
PostgreSQL (a grep of the raw file and of a pg_dump finds no secret), and rotation."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from _required import unavailable
from click.testing import CliRunner
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pgsupport import PG_DSN, fresh_schema, require_postgres

from squall.cli.admin import admin
from squall.config import Settings
from squall.entities.activation import pending_record
from squall.errors import ConfigError, ProviderError
from squall.logforwarding.config import LogForwardingConfig
from squall.store.contracts import LOG_FORWARDING
from squall.store.encrypted import EncryptedStore
from squall.store.encryption import (
    AES256,
    KEY_FILE,
    KeyRing,
    Keys,
    encode_key,
    key_ring,
    new_key,
    parse_key,
    read_key_file,
    write_key_file,
)
from squall.store.postgres import PostgresStore
from squall.store.rotation import reencrypt
from squall.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

SECRETS = {
    "action": "action-secret-7f3a9c",
    "package": "package-secret-2b8e1d",
    "trigger": "trigger-secret-9d4c6a",
    "payload": "alarm-payload-secret-5e1f0b",
    "message": "pending-message-secret-8a2d7c",
    "object": "nested-object-secret-3c9b2e",
    "credential": "splunk-hec-token-secret-6f4a1d",
}


def ring(*keys: str) -> KeyRing:
    parsed = [parse_key(k, "test key") for k in keys]
    return KeyRing(Keys(parsed[0], tuple(parsed[1:])))


# -- the ring ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["text", 42, 1.5, True, None, ["a", 1], {"k": {"n": [1]}}])
def test_lock_then_unlock_gives_back_every_json_value(value: Any) -> None:
    # Given a ring / When a parameter is locked
    r = ring(new_key())
    locked = r.lock([{"key": "p", "value": value, "init": True}])
    # Then it is marked and its value is OpenWhisk's shape: base64(ivlen, iv, ciphertext)
    assert locked[0]["encryption"] == AES256 and locked[0]["init"] is True
    raw = base64.b64decode(locked[0]["value"])
    (iv_len,) = struct.unpack(">i", raw[:4])
    assert iv_len == 12 and len(raw) == 4 + 12 + len(orjson.dumps(value)) + 16
    # And unlocking gives the value back, with its type, and drops the marker
    assert r.unlock(locked) == [{"key": "p", "value": value, "init": True}]


def test_same_value_encrypts_differently_each_time() -> None:
    r = ring(new_key())
    first, second = r.lock([{"key": "p", "value": "v"}, {"key": "q", "value": "v"}])
    assert first["value"] != second["value"]


def test_plain_parameters_written_before_are_read_as_they_are() -> None:
    r = ring(new_key())
    plain = [{"key": "old", "value": "written before encryption"}]
    assert r.unlock(plain) == plain
    assert r.stale(plain)


def test_a_value_under_an_unknown_key_is_an_error_never_the_ciphertext() -> None:
    locked = ring(new_key()).lock([{"key": "p", "value": "secret"}])
    with pytest.raises(ProviderError, match="key this server does not have"):
        ring(new_key()).unlock(locked)


def test_previous_keys_still_open_values_and_mark_them_stale() -> None:
    # Given a value locked under key A
    a, b = new_key(), new_key()
    locked = ring(a).lock([{"key": "p", "value": "secret"}])
    # When the ring's current key is B with A as the previous one
    rotated = ring(b, a)
    # Then A's values open, and are stale (a rotation rewrites them) until relocked
    assert rotated.unlock(locked)[0]["value"] == "secret"
    assert rotated.stale(locked)
    assert not rotated.stale(rotated.lock(rotated.unlock(locked)))


def test_a_cluster_without_key_stores_plain_and_refuses_marked_values(tmp_path: Path) -> None:
    # Given settings of a PostgreSQL cluster without SQUALL_PARAMETER_KEY
    settings = Settings(home=tmp_path, store_url="postgresql://db/squall")
    r = key_ring(settings)
    # Then nothing is invented: parameters stay plain, and no key file is made
    assert not r.enabled
    assert r.lock([{"key": "p", "value": 1}]) == [{"key": "p", "value": 1}]
    assert not (tmp_path / KEY_FILE).exists()
    # And a value someone else encrypted is an error, not a ciphertext handed out
    with pytest.raises(ProviderError):
        r.unlock(ring(new_key()).lock([{"key": "p", "value": 1}]))


def test_settings_keys_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        key_ring(Settings(home=tmp_path, parameter_key=base64.b64encode(b"short").decode()))
    with pytest.raises(ConfigError, match="not a base64 key"):
        key_ring(Settings(home=tmp_path, parameter_key="not base64!"))
    with pytest.raises(ConfigError, match="without SQUALL_PARAMETER_KEY"):
        key_ring(Settings(home=tmp_path, parameter_key_previous=new_key()))
    a, b = new_key(), new_key()
    r = key_ring(Settings(home=tmp_path, parameter_key=a, parameter_key_previous=f"{b}"))
    assert r.keys == Keys(parse_key(a, "a"), (parse_key(b, "b"),))


def test_standalone_makes_an_owner_only_key_file_once(tmp_path: Path) -> None:
    # Given a standalone home without a key / When the ring is made twice
    settings = Settings(home=tmp_path)
    first, second = key_ring(settings), key_ring(settings)
    # Then one key was made, kept in an owner-only file, and used by both
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.keys == second.keys == read_key_file(path)
    assert first.enabled


def test_a_file_backed_ring_follows_a_rotated_key_file(tmp_path: Path) -> None:
    # Given a running server's ring on a key file
    settings = Settings(home=tmp_path)
    running = key_ring(settings)
    path = tmp_path / KEY_FILE
    old = read_key_file(path)
    # When a rotation writes a new key first in the file and seals a value with it
    fresh = new_key()
    write_key_file(path, [fresh, encode_key(old.current)])
    locked = ring(fresh).lock([{"key": "p", "value": "rotated"}])
    # Then the running ring opens it (it re-reads the file) and writes with the new key
    assert running.unlock(locked)[0]["value"] == "rotated"
    assert running.keys.current == parse_key(fresh, "fresh")


def test_sealed_bytes_round_trip_and_plain_bytes_pass() -> None:
    r = ring(new_key())
    sealed = r.seal(b'{"payload": "x"}')
    assert b"payload" not in sealed
    assert r.unseal(sealed) == b'{"payload": "x"}'
    assert r.unseal(b'{"plain": 1}') == b'{"plain": 1}'


# -- the store, over both providers: nothing secret reaches the database ------------------


async def write_secrets(store: EncryptedStore) -> None:
    """An action, a package, a trigger, an alarm schedule and a pending activation, each
    holding one of SECRETS, written through the encrypting store."""
    entities = store.entities
    await entities.put(
        "guest",
        "actions",
        "act",
        {
            "name": "act",
            "parameters": [
                {"key": "token", "value": SECRETS["action"]},
                {"key": "nested", "value": {"deep": [SECRETS["object"]]}, "init": True},
            ],
        },
        None,
    )
    await entities.put(
        "guest",
        "packages",
        "pkg",
        {"parameters": [{"key": "pw", "value": SECRETS["package"]}]},
        None,
    )
    await entities.put(
        "guest",
        "triggers",
        "trg",
        {"parameters": [{"key": "k", "value": SECRETS["trigger"]}]},
        None,
    )
    # A log-forwarding configuration, as squall.logforwarding stores it.
    forwarding = LogForwardingConfig(
        "splunk_hec",
        {"host": "h", "port": "8088", "index": "i", "hec_token": SECRETS["credential"]},
    )
    await entities.put("guest", LOG_FORWARDING, "config", forwarding.to_body(), None)
    alarm = {"alarm": {"cron": "* * * * *", "payload": {"p": SECRETS["payload"]}}, "id": "1"}
    await store.schedules.put("guest", "trg", alarm, 1_700_000_060_000, None)
    record = pending_record(
        namespace="guest",
        subject="guest",
        activation_id="a" * 32,
        name="act",
        path="guest/act",
        version="0.0.1",
        accepted_ms=1,
    )
    await store.activations.put_pending(record, orjson.dumps({"args": SECRETS["message"]}))


async def check_readable(store: EncryptedStore) -> None:
    """Everything written by :func:`write_secrets` reads back in plain."""
    act = await store.entities.get("guest", "actions", "act")
    assert act.body["parameters"] == [
        {"key": "token", "value": SECRETS["action"]},
        {"key": "nested", "value": {"deep": [SECRETS["object"]]}, "init": True},
    ]
    forwarding = await store.entities.get("guest", LOG_FORWARDING, "config")
    assert (
        LogForwardingConfig.from_body(forwarding.body).settings["hec_token"]
        == (SECRETS["credential"])
    )
    listed = await store.entities.list("guest", "packages")
    assert listed[0].body["parameters"] == [{"key": "pw", "value": SECRETS["package"]}]
    schedule = await store.schedules.get("guest", "trg")
    assert schedule.body["alarm"]["payload"] == {"p": SECRETS["payload"]}
    due = await store.schedules.due(1_700_000_060_000, 10)
    assert due[0].body == schedule.body
    (pending,) = await store.activations.unfinished("", 10)
    assert pending.message is not None
    assert orjson.loads(pending.message) == {"args": SECRETS["message"]}


def assert_no_secret(raw: bytes, where: str) -> None:
    found = [name for name, secret in SECRETS.items() if secret.encode() in raw]
    assert not found, f"{where} shows the secrets of {found}"


def sqlite_bytes(home: Path) -> bytes:
    """The database file and whatever lies beside it (WAL, shared memory)."""
    return b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("squall.db"))


def pg_dump_of(pg_dump: str, schema: str) -> bytes:
    return subprocess.run(
        [pg_dump, "--no-password", "-n", schema, PG_DSN],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout


async def test_sqlite_file_holds_no_secret(tmp_path: Path) -> None:
    # Given secrets written through the encrypting store into an SQLite file
    path = tmp_path / "squall.db"
    store = EncryptedStore(await SqliteStore.open(path), ring(new_key()))
    try:
        await write_secrets(store)
        # Then they read back in plain
        await check_readable(store)
    finally:
        await store.close()
    # And no byte sequence of the file (nor of a WAL left beside it) is one of them
    raw = sqlite_bytes(tmp_path)
    assert b"token" in raw  # the parameter names are there, so the grep reads the data
    assert_no_secret(raw, "the SQLite file")


async def test_postgres_dump_holds_no_secret(tmp_path: Path) -> None:
    # Given secrets written through the encrypting store into PostgreSQL
    require_postgres()
    pg_dump = shutil.which("pg_dump") or unavailable(
        "pg_dump is not installed (apt-get install postgresql-client)"
    )
    with fresh_schema() as schema:
        store = EncryptedStore(await PostgresStore.open(PG_DSN, schema=schema), ring(new_key()))
        try:
            await write_secrets(store)
            await check_readable(store)
        finally:
            await store.close()
        # When the database is dumped / Then the dump shows none of them
        dump = pg_dump_of(pg_dump, schema)
        assert b"token" in dump
        assert_no_secret(dump, "pg_dump")


async def test_rotation_moves_everything_to_the_new_key(tmp_path: Path) -> None:
    # Given secrets under key A, and one action written before encryption was on
    a, b = new_key(), new_key()
    inner = await SqliteStore.open(tmp_path / "squall.db")
    await inner.auth.create_subject("guest")
    old = EncryptedStore(inner, ring(a))
    await write_secrets(old)
    plain = [{"key": "legacy", "value": "plain-legacy-secret"}]
    await inner.entities.put("guest", "actions", "legacy", {"parameters": plain}, None)
    # When the ring becomes B (A previous) and everything is re-encrypted
    rotated = EncryptedStore(inner, ring(b, a))
    report = await reencrypt(rotated)
    assert report.rewritten == {
        "actions": 2,
        "packages": 1,
        "triggers": 1,
        LOG_FORWARDING: 1,
        "feed schedules": 1,
    }
    # Then a ring with B alone reads all of it, the legacy action encrypted too
    only_b = EncryptedStore(inner, ring(b))
    await check_readable(rotated)  # the pending message is under A: A must stay meanwhile
    assert (await only_b.entities.get("guest", "actions", "act")).body["parameters"][0] == {
        "key": "token",
        "value": SECRETS["action"],
    }
    assert (await only_b.entities.get("guest", "actions", "legacy")).body["parameters"] == plain
    assert (await only_b.schedules.get("guest", "trg")).body["id"] == "1"
    raw_legacy = await inner.entities.get("guest", "actions", "legacy")
    assert raw_legacy.body["parameters"][0]["encryption"] == AES256
    # And a second rotation finds nothing left to do
    again = await reencrypt(rotated)
    assert again.total == 0
    await inner.close()


def test_values_openwhisk_encrypted_are_read() -> None:
    # Given a value as OpenWhisk's aes-256 encrypter writes it: a 128-byte IV, the compact
    # JSON of the value, base64(IV length, IV, ciphertext and tag)
    key = new_key()
    iv = os.urandom(128)
    sealed = AESGCM(base64.b64decode(key)).encrypt(iv, b'{"user":"ow"}', None)
    value = base64.b64encode(struct.pack(">i", 128) + iv + sealed).decode()
    # When Squall reads it with the same key / Then it is the value
    entry = {"key": "p", "value": value, "encryption": AES256}
    assert ring(key).unlock([entry]) == [{"key": "p", "value": {"user": "ow"}}]


def test_admin_rotates_a_postgres_store_with_the_settings_keys(tmp_path: Path) -> None:
    # Given secrets in PostgreSQL under key A
    require_postgres()
    a, b = new_key(), new_key()
    with fresh_schema() as schema:

        async def write() -> None:
            inner = await PostgresStore.open(PG_DSN, schema=schema)
            await inner.auth.create_subject("guest")
            store = EncryptedStore(inner, ring(a))
            await write_secrets(store)
            await store.close()

        asyncio.run(write())
        # When the operator rotates with the new key current and A previous
        url = f"{PG_DSN}?options=-csearch_path%3D{schema}"
        env = {"SQUALL_PARAMETER_KEY": b, "SQUALL_PARAMETER_KEY_PREVIOUS": a}
        result = CliRunner().invoke(
            admin, ["--home", str(tmp_path), "--store", url, "parameter-key", "rotate"], env=env
        )
        assert result.exit_code == 0, result.output
        assert "actions: 1 re-encrypted" in result.output
        assert "drop SQUALL_PARAMETER_KEY_PREVIOUS" in result.output

        # Then key B alone reads everything (but the pending message, still under A)
        async def read() -> None:
            store = EncryptedStore(await PostgresStore.open(PG_DSN, schema=schema), ring(b))
            try:
                act = await store.entities.get("guest", "actions", "act")
                assert act.body["parameters"][0]["value"] == SECRETS["action"]
                schedule = await store.schedules.get("guest", "trg")
                assert schedule.body["alarm"]["payload"] == {"p": SECRETS["payload"]}
            finally:
                await store.close()

        asyncio.run(read())
    # And without keys for a PostgreSQL store the command says what to set
    result = CliRunner().invoke(
        admin, ["--store", "postgresql://x/y", "parameter-key", "rotate"], env={}
    )
    assert result.exit_code != 0 and "SQUALL_PARAMETER_KEY" in result.output
