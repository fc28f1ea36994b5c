"""``squall admin`` as an operator runs it: a subprocess acting on the store of a running
``squall standalone``, whose API must see what admin wrote."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _postgres import PG_DSN
from _required import unavailable
from _standalone import Standalone, start
from _standalone import run_admin as admin

from squall.store.postgres_schema import SCHEMA_VERSION as PG_SCHEMA_VERSION
from squall.store.sqlite_schema import SCHEMA_VERSION

pytestmark = pytest.mark.integration

HELLO = "function main(args) { console.log('hi'); return { hello: args.who || 'world' }; }"
PY_HELLO = "def main(args):\n    return {'hello': 'python'}\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    squall = start(tmp_path_factory.mktemp("admin-squall"), keep_warm_s=60)
    try:
        yield squall
    finally:
        squall.stop_cleanly()


def new_namespace() -> str:
    return f"ns-{uuid.uuid4().hex[:10]}"


def api(server: Standalone, auth: str) -> httpx.Client:
    uid, _, key = auth.partition(":")
    return server.client(auth=(uid, key))


def test_a_user_created_by_admin_can_use_the_running_server(server: Standalone) -> None:
    # Given a namespace created with admin next to the running server
    namespace = new_namespace()
    created = admin(server.home, "user", "create", namespace).stdout.strip()
    uid, _, key = created.partition(":")
    assert uuid.UUID(uid) and len(key) == 64
    # When its key calls the API
    with api(server, created) as client:
        # Then the server knows it: its namespace, and actions of its own
        assert client.get("/namespaces").json() == [namespace]
        put = client.put(
            "/namespaces/_/actions/hello", json={"exec": {"kind": "nodejs:20", "code": HELLO}}
        )
        assert put.status_code == 200, put.text
        invoked = client.post("/namespaces/_/actions/hello?blocking=true&result=true", json={})
        assert invoked.json() == {"hello": "world"}
    # And admin lists it and shows its uuid, never a key
    assert f"{namespace}\t{uid}" in admin(server.home, "user", "list").stdout.splitlines()
    got = admin(server.home, "user", "get", namespace)
    assert got.stdout.strip() == uid
    assert key not in got.stdout + got.stderr
    assert admin(server.home, "user", "whois", created).stdout.splitlines() == [
        f"subject: {namespace}",
        f"namespace: {namespace}",
    ]


def test_create_twice_is_refused_and_force_rotates_the_key(server: Standalone) -> None:
    # Given a namespace
    namespace = new_namespace()
    first = admin(server.home, "user", "create", namespace).stdout.strip()
    # When it is created again / Then wskadmin's refusal
    again = admin(server.home, "user", "create", namespace, ok=False)
    assert again.returncode == 1
    assert "Namespace already exists" in again.stderr
    # When it is created with --force (the first key never used, so nothing cached it)
    second = admin(server.home, "user", "create", namespace, "--force").stdout.strip()
    # Then the uuid stays, the key changes; only the new key works
    assert second.partition(":")[0] == first.partition(":")[0]
    assert second != first
    with api(server, second) as client:
        assert client.get("/namespaces").status_code == 200
    with api(server, first) as client:
        assert client.get("/namespaces").status_code == 401


def test_create_with_given_credentials_and_delete(server: Standalone) -> None:
    # Given credentials chosen by the operator
    namespace = new_namespace()
    auth = f"{uuid.uuid4()}:{'k' * 64}"
    # When the namespace is created with them
    assert admin(server.home, "user", "create", namespace, "--auth", auth).stdout.strip() == auth
    # Then they work
    with api(server, auth) as client:
        assert client.get("/namespaces").json() == [namespace]
    # And a short key or a bad uuid are refused, with wskadmin's words
    short = admin(
        server.home, "user", "create", new_namespace(), "-u", f"{uuid.uuid4()}:x", ok=False
    )
    assert "authorization key must be at least 64 characters long" in short.stderr
    bad = admin(server.home, "user", "create", new_namespace(), "-u", f"nope:{'k' * 64}", ok=False)
    assert "authorization id is not a valid UUID" in bad.stderr
    # When it is deleted / Then wskadmin's answers, and a second delete finds nothing
    assert admin(server.home, "user", "delete", namespace).stdout.strip() == "Subject deleted"
    gone = admin(server.home, "user", "delete", namespace, ok=False)
    assert gone.returncode == 1 and "Subject to delete not found" in gone.stderr
    assert namespace not in admin(server.home, "user", "list").stdout


def test_limits_set_get_delete(server: Standalone) -> None:
    # Given a namespace without limits
    namespace = new_namespace()
    admin(server.home, "user", "create", namespace)
    assert admin(server.home, "limits", "get", namespace).stdout.strip() == (
        "No limits found, default system limits apply"
    )
    # When limits are set
    out = admin(
        server.home, "limits", "set", namespace,
        "--invocationsPerMinute", "7", "--concurrentInvocations", "3",
        "--allowedKinds", "nodejs:default", "--allowedKinds", "sequence",
        "--disableStoreActivations",
    ).stdout  # fmt: skip
    # Then wskadmin's message, and get shows them (the default kind resolved)
    assert out.strip() == f"Limits successfully set for '{namespace}'"
    assert admin(server.home, "limits", "get", namespace).stdout.splitlines() == [
        "concurrentInvocations = 3",
        "invocationsPerMinute = 7",
        "allowedKinds = nodejs:20, sequence",
        "storeActivations = false",
    ]
    # When set again: they replace the previous ones, as in wskadmin
    out = admin(server.home, "limits", "set", namespace, "--firesPerMinute", "2").stdout
    assert out.strip() == f"Limits successfully updated for '{namespace}'"
    assert admin(server.home, "limits", "get", namespace).stdout.splitlines() == [
        "firesPerMinute = 2"
    ]
    # When deleted / Then defaults again; a second delete finds nothing
    assert admin(server.home, "limits", "delete", namespace).stdout.strip() == "Limits deleted"
    again = admin(server.home, "limits", "delete", namespace, ok=False)
    assert f"Limits not found for '{namespace}'" in again.stderr
    # And an unknown namespace or kind is refused
    missing = admin(server.home, "limits", "set", "nobody-here", "--firesPerMinute", "1", ok=False)
    assert "no identities found for namespace 'nobody-here'" in missing.stderr
    bad_kind = admin(server.home, "limits", "set", namespace, "--allowedKinds", "cobol:1", ok=False)
    assert "The specified runtime 'cobol:1' is not supported" in bad_kind.stderr


def test_allowed_kinds_are_enforced_by_the_server(server: Standalone) -> None:
    # Given a namespace allowed Node actions only
    namespace = new_namespace()
    auth = admin(server.home, "user", "create", namespace).stdout.strip()
    admin(server.home, "limits", "set", namespace, "--allowedKinds", "nodejs:20")
    with api(server, auth) as client:
        # When it creates a Python action / Then OpenWhisk's 403
        refused = client.put(
            "/namespaces/_/actions/py", json={"exec": {"kind": "python:3.11", "code": PY_HELLO}}
        )
        assert refused.status_code == 403
        assert refused.json()["error"] == (
            "The supplied authentication is not authorized to access actions of kind 'python:3.11'."
        )
        # And a Node action is fine
        node = client.put(
            "/namespaces/_/actions/js", json={"exec": {"kind": "nodejs:20", "code": HELLO}}
        )
        assert node.status_code == 200, node.text
        # And the limits endpoint shows the allowed kinds
        assert client.get("/namespaces/_/limits").json()["allowedKinds"] == ["nodejs:20"]


def test_activations_not_stored_when_disabled(server: Standalone) -> None:
    # Given a namespace whose activations are not stored (set before its first call)
    namespace = new_namespace()
    auth = admin(server.home, "user", "create", namespace).stdout.strip()
    admin(server.home, "limits", "set", namespace, "--disableStoreActivations")
    with api(server, auth) as client:
        client.put(
            "/namespaces/_/actions/hello", json={"exec": {"kind": "nodejs:20", "code": HELLO}}
        )
        # When it invokes blocking
        invoked = client.post("/namespaces/_/actions/hello?blocking=true", json={"who": "me"})
        # Then it still gets the record, result and logs
        assert invoked.status_code == 200, invoked.text
        record = invoked.json()
        assert record["response"]["result"] == {"hello": "me"}
        # But nothing was stored
        got = client.get(f"/namespaces/_/activations/{record['activationId']}")
        assert got.status_code == 404
        assert client.get("/namespaces/_/activations?count=true").json() == {"activations": 0}
        assert client.get("/namespaces/_/limits").json()["storeActivations"] is False


def test_db_stats_and_migrate(server: Standalone, tmp_path: Path) -> None:
    # Given the running server's store, which holds the guest namespace
    # When the statistics are read
    lines = admin(server.home, "db", "stats").stdout.splitlines()
    stats = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in lines)
    # Then they name the store, its schema, and count what is in it
    assert stats["store"] == f"sqlite {server.home / 'squall.db'}"
    assert stats["schema version"] == str(SCHEMA_VERSION)
    assert int(stats["namespaces"]) >= 1
    assert {"actions", "packages", "triggers", "rules", "activations"} <= set(stats)
    assert stats["size"].endswith(" B)")
    # And migrate finds it up to date
    migrated = admin(server.home, "db", "migrate").stdout.strip()
    assert (
        migrated
        == f"Schema of {server.home / 'squall.db'} is up to date at version {SCHEMA_VERSION}"
    )
    # And on an empty home, migrate creates the store
    fresh = admin(tmp_path, "db", "migrate").stdout.strip()
    assert fresh == f"Created the schema of {tmp_path / 'squall.db'} at version {SCHEMA_VERSION}"


@pytest.fixture
def pg_store_url() -> Iterator[str]:
    """A PostgreSQL URL whose tables go to a schema of this test's own (dropped after)."""
    import psycopg

    try:
        admin_conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        problem = f"PostgreSQL on 127.0.0.1:5432 (database test) is not reachable: {error}"
        unavailable(problem)
    schema = f"admin_{uuid.uuid4().hex[:10]}"
    with admin_conn:
        admin_conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{PG_DSN}?options=-csearch_path%3D{schema}"
        finally:
            admin_conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_admin_on_a_postgresql_store(pg_store_url: str, tmp_path: Path) -> None:
    def pg(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return admin(tmp_path, "--store", pg_store_url, *args, ok=ok)

    # Given an empty PostgreSQL schema / When migrated / Then its tables are created
    assert pg("db", "migrate").stdout.startswith("Created the schema of postgresql://")
    again = pg("db", "migrate").stdout.strip()
    assert again.endswith(f"is up to date at version {PG_SCHEMA_VERSION}")
    # When a namespace with limits is created there
    auth = pg("user", "create", "pg-user").stdout.strip()
    pg("limits", "set", "pg-user", "--firesPerMinute", "4")
    # Then it is listed, its limits read back, and whois knows its key
    assert pg("user", "list").stdout.splitlines() == [f"pg-user\t{auth.partition(':')[0]}"]
    assert pg("limits", "get", "pg-user").stdout.splitlines() == ["firesPerMinute = 4"]
    assert "namespace: pg-user" in pg("user", "whois", auth).stdout
    # And the statistics count it
    lines = pg("db", "stats").stdout.splitlines()
    stats = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in lines)
    assert stats["store"].startswith("postgresql postgresql://postgres@127.0.0.1:5432/test")
    assert stats["namespaces"] == "1"
    assert stats["actions"] == "0"
    assert stats["gateway APIs"] == "0"
