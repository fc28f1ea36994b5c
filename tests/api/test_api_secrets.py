"""Parameters encrypted at rest, through the API: the owner reads and runs them in plain,
another namespace sees them encrypted, the raw SQLite file shows none of them, and
``squall admin parameter-key rotate`` re-encrypts them under a running server."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio.to_thread
import httpx
import pytest
from apisupport import BASE_URL, NS, node_action, poll
from click.testing import CliRunner

from squall.cli.admin import admin
from squall.cli.standalone import Standalone
from squall.errors import Conflict
from squall.store.encrypted import EncryptedEntityStore
from squall.store.encryption import AES256, KEY_FILE, KeyRing, read_key_file

pytestmark = pytest.mark.anyio

# The action answers the digest of its parameter, never the parameter: activation
# records are stored as they are, and the grep below must find only what was encrypted.
DIGEST = (
    "const crypto = require('crypto');\n"
    "function main(p) {\n"
    "  return {digest: crypto.createHash('sha256').update(String(p.token)).digest('hex')};\n"
    "}\n"
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
async def other(system: Standalone) -> AsyncIterator[httpx.AsyncClient]:
    try:
        subject = await system.store.auth.create_subject("reader2")
    except Conflict:
        subject = await system.store.auth.create_subject("reader2", rotate=True)
    uuid, key = subject.auth.split(":", 1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, auth=(uuid, key)
    ) as client:
        yield client


def entities_of(system: Standalone) -> EncryptedEntityStore:
    entities = system.store.entities
    assert isinstance(entities, EncryptedEntityStore)  # the server's store encrypts parameters
    return entities


def raw_store(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("squall.db"))


async def test_owner_reads_and_runs_secrets_the_file_holds_none(
    system: Standalone, client: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    # Given an action, a package and a trigger with secret default parameters
    secrets = {k: f"{k}-{unique('secret')}" for k in ("action", "package", "trigger")}
    pkg, trigger = unique("vault"), unique("trg")
    body = {"publish": True, "parameters": [{"key": "pw", "value": secrets["package"]}]}
    assert (await client.put(f"{NS}/packages/{pkg}", json=body)).status_code == 200
    action = node_action(DIGEST, parameters=[{"key": "token", "value": secrets["action"]}])
    put = await client.put(f"{NS}/actions/{pkg}/digest", json=action)
    assert put.status_code == 200, put.text
    body = {"parameters": [{"key": "t", "value": secrets["trigger"]}]}
    assert (await client.put(f"{NS}/triggers/{trigger}", json=body)).status_code == 200
    # Then the PUT answer and every GET show them in plain to their owner
    assert put.json()["parameters"] == [{"key": "token", "value": secrets["action"]}]
    got = (await client.get(f"{NS}/actions/{pkg}/digest")).json()
    assert got["parameters"] == [
        {"key": "pw", "value": secrets["package"]},
        {"key": "token", "value": secrets["action"]},
    ]
    got = (await client.get(f"{NS}/triggers/{trigger}")).json()
    assert got["parameters"] == [{"key": "t", "value": secrets["trigger"]}]
    # And the action runs with the plain value, blocking and not (a pending message)
    r = await client.post(
        f"{NS}/actions/{pkg}/digest", params={"blocking": "true", "result": "true"}
    )
    assert r.json() == {"digest": sha256(secrets["action"])}
    r = await client.post(f"{NS}/actions/{pkg}/digest")
    activation_id = r.json()["activationId"]

    async def done() -> bool | None:
        got = await client.get(f"{NS}/activations/{activation_id}")
        final = got.status_code == 200 and got.json()["response"]["status"] == "success"
        return True if final else None

    await poll(done, 30.0, "the non-blocking activation's record")
    # And the store's file (with its WAL) holds none of the secrets
    raw = raw_store(system.settings.home)
    assert b"digest" in raw
    assert [k for k, v in secrets.items() if v.encode() in raw] == []
    # And the key sits in an owner-only file in the home
    key_file = system.settings.home / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


async def test_another_namespace_sees_published_parameters_encrypted(
    client: httpx.AsyncClient, other: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    # Given a published package with a secret, and an action in it with one
    pkg, secret = unique("shared"), unique("shared-secret")
    body = {"publish": True, "parameters": [{"key": "pw", "value": secret}]}
    assert (await client.put(f"{NS}/packages/{pkg}", json=body)).status_code == 200
    action = node_action(DIGEST, parameters=[{"key": "token", "value": secret}])
    assert (await client.put(f"{NS}/actions/{pkg}/digest", json=action)).status_code == 200
    # When another namespace reads them
    base = "/api/v1/namespaces/guest"
    for path in (f"packages/{pkg}", f"actions/{pkg}/digest"):
        shown = (await other.get(f"{base}/{path}")).json()["parameters"]
        # Then it sees OpenWhisk's encrypted form, never the value
        assert shown and all(p["encryption"] == AES256 for p in shown)
        assert secret not in str(shown)
    # And its binding shows the bound package's parameters encrypted too
    binding = unique("bind")
    body = {"binding": {"namespace": "guest", "name": pkg}}
    assert (await other.put(f"/api/v1/namespaces/_/packages/{binding}", json=body)).is_success
    shown = (await other.get(f"/api/v1/namespaces/_/packages/{binding}")).json()["parameters"]
    assert shown[0]["key"] == "pw" and shown[0]["encryption"] == AES256
    # But it runs the action with the plain value
    r = await other.post(
        f"{base}/actions/{pkg}/digest", params={"blocking": "true", "result": "true"}
    )
    assert r.json() == {"digest": sha256(secret)}


async def test_admin_rotation_under_a_running_server(
    system: Standalone, client: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    # Given an action with a secret, stored under the home's key
    name, secret = unique("rot"), unique("rotated-secret")
    action = node_action(DIGEST, parameters=[{"key": "token", "value": secret}])
    assert (await client.put(f"{NS}/actions/{name}", json=action)).status_code == 200
    # And read once, so the server's catalog caches it (a standalone one for ever)
    assert (await client.get(f"{NS}/actions/{name}")).status_code == 200
    rev = (await entities_of(system).inner.get("guest", "actions", name)).rev
    home = system.settings.home
    before = read_key_file(home / KEY_FILE)
    # When the operator rotates the key while the server runs
    result = await anyio.to_thread.run_sync(
        lambda: CliRunner().invoke(admin, ["--home", str(home), "parameter-key", "rotate"])
    )
    assert result.exit_code == 0, result.output
    assert "re-encrypted" in result.output
    # Then the file holds a new key first and the old one after it
    after = read_key_file(home / KEY_FILE)
    assert after.current != before.current and after.previous == (before.current,)
    # And the stored parameter is under the new key alone
    raw = await entities_of(system).inner.get("guest", "actions", name)
    assert raw.body["parameters"][0]["encryption"] == AES256
    # And its revision is kept: the entity did not change, so what a server cached stays
    # right (another process's write reaches no standalone cache)
    assert raw.rev == rev
    only_new = KeyRing(type(after)(after.current))
    assert only_new.unlock(raw.body["parameters"])[0]["value"] == secret
    # And the running server still reads and runs it (with what it cached before)
    got = (await client.get(f"{NS}/actions/{name}")).json()
    assert got["parameters"] == [{"key": "token", "value": secret}]
    r = await client.post(f"{NS}/actions/{name}", params={"blocking": "true", "result": "true"})
    assert r.json() == {"digest": sha256(secret)}
