"""The embedded store's :class:`~squall.store.contracts.AuthStore`: subjects (namespaces
with their hashed keys and limits) and action keys, in the SQLite database of
:mod:`squall.store.sqlite`.

Guarantees, beyond the contract's: every method runs without awaiting on the event-loop
thread, and read-check-write sequences run in ``BEGIN IMMEDIATE`` transactions (see
:mod:`squall.store.sqlite_schema`), so they are atomic against other tasks and other
processes using the same file. ``delete_subject`` takes the action key along through the
table's ``ON DELETE CASCADE``.
"""

from __future__ import annotations

import builtins
from typing import Any

import orjson

from squall.errors import Conflict, NotFound
from squall.store import keys
from squall.store.contracts import Subject
from squall.store.records import NAMESPACE_EXISTS, UUID_TAKEN, Clock, new_credentials
from squall.store.sqlite_schema import Database, dumps_body


class SqliteAuthStore:
    """:class:`~squall.store.contracts.AuthStore` over the ``subjects`` and
    ``action_keys`` tables.

    One subject per namespace. Keys are stored as :func:`squall.store.keys.hash_key`
    hashes; nothing here logs a key. Limits live on the subject's row, so
    :meth:`set_limits` needs an existing subject (``NotFound`` otherwise), a key rotation
    keeps them, and :meth:`delete_subject` removes them with the credentials.
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create_subject(
        self,
        namespace: str,
        *,
        uuid: str | None = None,
        key: str | None = None,
        rotate: bool = False,
    ) -> Subject:
        key = new_credentials(uuid, key)
        key_hash = keys.hash_key(key)
        created = self._clock()
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT uuid FROM subjects WHERE namespace = ?", (namespace,)
            ).fetchone()
            if row is not None and not rotate:
                raise Conflict(NAMESPACE_EXISTS)
            if uuid is None:
                # Rotating keeps the subject's uuid; a new subject gets a fresh one.
                uuid = row[0] if row is not None else keys.new_uuid()
            taken = conn.execute(
                "SELECT 1 FROM subjects WHERE uuid = ? AND namespace != ?", (uuid, namespace)
            ).fetchone()
            if taken is not None:
                raise Conflict(UUID_TAKEN)
            if row is None:
                conn.execute(
                    "INSERT INTO subjects (namespace, uuid, key_hash, created) VALUES (?, ?, ?, ?)",
                    (namespace, uuid, key_hash, created),
                )
            else:
                conn.execute(
                    "UPDATE subjects SET uuid = ?, key_hash = ? WHERE namespace = ?",
                    (uuid, key_hash, namespace),
                )
        return Subject(namespace, uuid, key)

    async def get_subject(self, namespace: str) -> Subject:
        with self._db.autocommit() as conn:
            row = conn.execute(
                "SELECT uuid FROM subjects WHERE namespace = ?", (namespace,)
            ).fetchone()
        if row is None:
            raise NotFound()
        return Subject(namespace, row[0])

    async def delete_subject(self, namespace: str) -> None:
        with self._db.autocommit() as conn:
            deleted = conn.execute("DELETE FROM subjects WHERE namespace = ?", (namespace,))
        if deleted.rowcount == 0:
            raise NotFound()

    async def list_subjects(self) -> builtins.list[Subject]:
        with self._db.autocommit() as conn:
            rows = conn.execute("SELECT namespace, uuid FROM subjects ORDER BY namespace")
            return [Subject(namespace, uuid) for namespace, uuid in rows]

    async def authenticate(self, uuid: str, key: str) -> Subject | None:
        # A uuid names a subject's key or an action key. Both tables in one query; a
        # uuid found in both (possible only with a uuid given by an operator) is tried
        # against each hash, so neither credential can stand in for the other.
        with self._db.autocommit() as conn:
            rows = conn.execute(
                "SELECT namespace, key_hash FROM subjects WHERE uuid = ?"
                " UNION ALL SELECT namespace, key_hash FROM action_keys WHERE uuid = ?",
                (uuid, uuid),
            ).fetchall()
        if not rows:
            # Hash and compare anyway, so an unknown uuid costs what a wrong key costs.
            keys.verify_dummy(key)
            return None
        for namespace, key_hash in rows:
            if keys.verify_key(key, key_hash):
                return Subject(namespace, uuid)
        return None

    async def get_limits(self, namespace: str) -> dict[str, Any]:
        with self._db.autocommit() as conn:
            row = conn.execute(
                "SELECT limits FROM subjects WHERE namespace = ?", (namespace,)
            ).fetchone()
        if row is None:
            return {}
        limits: dict[str, Any] = orjson.loads(row[0])
        return limits

    async def set_limits(self, namespace: str, limits: dict[str, Any]) -> None:
        text = dumps_body(limits)
        with self._db.autocommit() as conn:
            updated = conn.execute(
                "UPDATE subjects SET limits = ? WHERE namespace = ?", (text, namespace)
            )
        if updated.rowcount == 0:
            raise NotFound()

    async def add_action_key(self, namespace: str, uuid: str, key: str) -> str | None:
        key_hash = keys.hash_key(key)
        created = self._clock()
        # One write transaction: of two invokers (processes) minting at once, the second
        # finds the first one's row and answers its uuid.
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT uuid FROM action_keys WHERE namespace = ?", (namespace,)
            ).fetchone()
            if row is not None:
                return str(row[0])
            subject = conn.execute(
                "SELECT 1 FROM subjects WHERE namespace = ?", (namespace,)
            ).fetchone()
            if subject is None:
                return None
            taken = conn.execute("SELECT 1 FROM action_keys WHERE uuid = ?", (uuid,)).fetchone()
            if taken is not None:
                raise Conflict(UUID_TAKEN)
            conn.execute(
                "INSERT INTO action_keys (namespace, uuid, key_hash, created) VALUES (?, ?, ?, ?)",
                (namespace, uuid, key_hash, created),
            )
        return uuid

    async def get_action_key(self, namespace: str) -> str | None:
        with self._db.autocommit() as conn:
            row = conn.execute(
                "SELECT uuid FROM action_keys WHERE namespace = ?", (namespace,)
            ).fetchone()
        return None if row is None else str(row[0])

    async def delete_action_key(self, namespace: str) -> bool:
        with self._db.autocommit() as conn:
            deleted = conn.execute("DELETE FROM action_keys WHERE namespace = ?", (namespace,))
        return deleted.rowcount > 0
