"""The PostgreSQL store's schema: its migrations, the version they lead to, and how
they are applied (:func:`migrate`, called by :func:`squall.store.postgres_database.connect`).

Guarantees:

- Migrations not yet recorded in ``squall_schema_version`` are applied in one
  transaction that first takes a transaction-scoped advisory lock (keyed by the schema's
  name): several controllers starting at once apply each migration exactly once, the
  others wait and then find the schema current. DDL is transactional in PostgreSQL, so a
  failing migration leaves the previous version. A newer schema is refused.
- Tables live in the connection's current schema (the first of ``search_path``), so one
  database can hold several independent Squall stores (the tests use one schema each).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection, sql

from squall.errors import ProviderError

if TYPE_CHECKING:
    from squall.store.postgres_database import PgDatabase

# Each migration is a list of statements run in one transaction. Append, never edit: the
# position in this tuple (1-based) is the version stored in squall_schema_version.
#
# Bodies are `json`, not `jsonb`: Squall stores and returns whole documents and never
# queries inside them, and `jsonb` would reorder object keys, drop duplicate keys and
# refuse the string "\u0000" (an action may well log or return one), while `json` keeps
# the text as written after validating it — and is cheaper to write and to read back.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE entities (
            namespace  text   NOT NULL,
            collection text   NOT NULL,
            name       text   NOT NULL,
            package    text   NOT NULL,
            rev        text   NOT NULL,
            body       json   NOT NULL,
            updated    bigint NOT NULL,
            PRIMARY KEY (namespace, collection, name)
        )""",
        """CREATE INDEX entities_by_updated
            ON entities (namespace, collection, updated DESC, name)""",
        """CREATE INDEX entities_by_package
            ON entities (namespace, collection, package, updated DESC, name)""",
        # `name` is the entity path ("action" or "pkg/action"), copied out of the record.
        # Listing is "newest first by namespace (and name)": both indexes end in
        # (start DESC, activation_id DESC), the exact ORDER BY, so a page is an index
        # range scan that stops after LIMIT rows. `activations_by_age` serves retention.
        """CREATE TABLE activations (
            activation_id text   PRIMARY KEY,
            namespace     text   NOT NULL,
            name          text   NOT NULL,
            start         bigint NOT NULL,
            body          json   NOT NULL
        )""",
        """CREATE INDEX activations_by_start
            ON activations (namespace, start DESC, activation_id DESC)""",
        """CREATE INDEX activations_by_name
            ON activations (namespace, name, start DESC, activation_id DESC)""",
        "CREATE INDEX activations_by_age ON activations (start)",
        """CREATE TABLE subjects (
            namespace text   PRIMARY KEY,
            uuid      text   NOT NULL UNIQUE,
            key_hash  text   NOT NULL,
            limits    json   NOT NULL DEFAULT '{}',
            created   bigint NOT NULL
        )""",
        """CREATE TABLE feed_schedules (
            namespace text NOT NULL,
            trigger   text NOT NULL,
            rev       text NOT NULL,
            body      json NOT NULL,
            due       bigint,
            PRIMARY KEY (namespace, trigger)
        )""",
        """CREATE INDEX feed_schedules_by_due
            ON feed_schedules (due, namespace, trigger) WHERE due IS NOT NULL""",
        """CREATE TABLE feed_ticks (
            tick text   PRIMARY KEY,
            at   bigint NOT NULL
        )""",
        "CREATE INDEX feed_ticks_by_at ON feed_ticks (at)",
    ),
    (
        # Action keys (squall.store.postgres_auth): a namespace's second credential, the
        # one the invoker gives actions. The key is derived from a platform secret and the
        # uuid; only its hash_key hash is stored. It goes with its subject.
        """CREATE TABLE action_keys (
            namespace text   PRIMARY KEY
                REFERENCES subjects (namespace) ON DELETE CASCADE,
            uuid      text   NOT NULL UNIQUE,
            key_hash  text   NOT NULL,
            created   bigint NOT NULL
        )""",
    ),
    (
        # The figures the dashboard plots (ActivationStore.stats), copied out of the record
        # by a trigger on every write (a generated column may not read the annotations
        # with json_array_elements, and casting the body to jsonb would refuse records
        # holding \u0000), and kept in a covering index for index-only scans of a window.
        "ALTER TABLE activations ADD COLUMN status text",
        "ALTER TABLE activations ADD COLUMN duration double precision",
        "ALTER TABLE activations ADD COLUMN init_time double precision",
        # PostgreSQL refuses to de-escape \u0000 into text, even in a field it only
        # skips, so the figures are read from a copy where that escape is \ufffd instead:
        # the same length and leading backslash, so the copy is valid JSON whatever
        # precedes it, and the stored body is untouched.
        """CREATE FUNCTION activation_figures() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            doc json := replace(NEW.body::text, '\\u0000', '\\ufffd')::json;
        BEGIN
            NEW.status := CASE WHEN json_typeof(doc -> 'response' -> 'status') = 'string'
                THEN doc -> 'response' ->> 'status' END;
            NEW.duration := CASE WHEN json_typeof(doc -> 'duration') = 'number'
                THEN (doc ->> 'duration')::double precision END;
            NEW.init_time := CASE WHEN json_typeof(doc -> 'annotations') = 'array' THEN
                (SELECT (a ->> 'value')::double precision
                   FROM json_array_elements(doc -> 'annotations') AS a
                  WHERE json_typeof(a) = 'object' AND a ->> 'key' = 'initTime'
                    AND json_typeof(a -> 'value') = 'number'
                  LIMIT 1) END;
            RETURN NEW;
        END $$""",
        """CREATE TRIGGER activations_figures BEFORE INSERT OR UPDATE ON activations
            FOR EACH ROW EXECUTE FUNCTION activation_figures()""",
        "UPDATE activations SET body = body",  # the records stored before: via the trigger
        """CREATE INDEX activations_figures ON activations (namespace, start)
            INCLUDE (name, status, duration, init_time)""",
    ),
    (
        # Crash recovery (squall.store.postgres_activations): a pending record's run state
        # (`queued`, `started`; NULL once final) and, while queued, what it takes to run
        # it (the activation message, kept beside the record and never in its JSON,
        # dropped when it starts or ends). The partial index lists the unfinished ones.
        "ALTER TABLE activations ADD COLUMN state text, ADD COLUMN message bytea",
        # Records left pending by an older Squall: queued, with nothing to run them
        # from (a restart ends them with an error saying so; an invoker that gets their
        # message may still start them, once).
        """UPDATE activations SET state = 'queued'
            WHERE replace(body::text, '\\u0000', '\\ufffd')::json -> 'response' ->> 'status'
                = 'pending'""",
        """CREATE INDEX activations_unfinished
            ON activations (activation_id) WHERE state IS NOT NULL""",
    ),
    (
        # The API gateway's APIs (squall.store.postgres_apis): one swagger document per
        # namespace and base path; a gateway request finds its API by tenant.
        """CREATE TABLE gateway_apis (
            namespace text   NOT NULL,
            base_path text   NOT NULL,
            tenant    text   NOT NULL,
            rev       text   NOT NULL,
            body      json   NOT NULL,
            updated   bigint NOT NULL,
            PRIMARY KEY (namespace, base_path)
        )""",
        "CREATE INDEX gateway_apis_by_tenant ON gateway_apis (tenant, base_path)",
    ),
    (
        # Who runs an unfinished activation, when one member must finish it after a
        # crash: a cluster controller's composer writes "<controller id>/<incarnation>"
        # with the pending record of a topmost sequence or composition, and a restart
        # of that controller id ends or runs what an earlier incarnation left
        # (controller/restart.py). NULL for everything else.
        "ALTER TABLE activations ADD COLUMN owner text",
    ),
    (
        # The figures are given by the writer (squall.store.postgres_activations computes
        # them from the typed record): the trigger parsed each written body about eight
        # times (`->` on `json` parses again), half the server's CPU of an activation
        # write. A connection of this version says so (`squall.figures = given`, set at
        # connect: FIGURES_GIVEN); one of an older Squall does not, and the trigger still
        # computes them for its writes (a rolling upgrade).
        "DROP TRIGGER activations_figures ON activations",
        """CREATE TRIGGER activations_figures BEFORE INSERT OR UPDATE ON activations
            FOR EACH ROW
            WHEN (current_setting('squall.figures', true) IS DISTINCT FROM 'given')
            EXECUTE FUNCTION activation_figures()""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
#: The connection option of a writer that gives the figures (status, duration,
#: init_time) with every activation it writes: the trigger leaves them as given.
FIGURES_GIVEN = "-c squall.figures=given"

# First half of the two-key advisory lock taken while migrating ("sqll"); the second half
# is a hash of the schema's name, so stores in different schemas do not wait for each other.
_MIGRATION_LOCK = 0x73716C6C


async def schema_version(db: PgDatabase) -> int:
    async def read(conn: AsyncConnection[Any]) -> int:
        cur = await conn.execute("SELECT to_regclass('squall_schema_version') IS NOT NULL")
        row = await cur.fetchone()
        if row is None or not row[0]:
            return 0
        cur = await conn.execute("SELECT coalesce(max(version), 0) FROM squall_schema_version")
        row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    return await db.run(read, idempotent=True)


async def migrate(db: PgDatabase, *, create_schema: str | None = None) -> int:
    """Apply pending migrations under the advisory lock; returns the resulting version."""

    async def apply(conn: AsyncConnection[Any]) -> int:
        async with conn.transaction():
            if create_schema is not None:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                    (_MIGRATION_LOCK, create_schema),
                )
                await conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(create_schema))
                )
            cur = await conn.execute("SELECT current_schema()")
            row = await cur.fetchone()
            if row is None or row[0] is None:
                raise ProviderError(
                    "postgresql: no current schema (does the search_path schema exist?)"
                )
            # Held until COMMIT: whoever comes second sees the versions the first wrote.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_MIGRATION_LOCK, row[0])
            )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS squall_schema_version"
                " (version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT coalesce(max(version), 0) FROM squall_schema_version")
            row = await cur.fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise ProviderError(
                    f"database schema version {version} is newer than this Squall "
                    f"supports ({SCHEMA_VERSION})"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number - 1]:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO squall_schema_version (version) VALUES (%s)", (number,)
                )
            return SCHEMA_VERSION

    return await db.run(apply, idempotent=True)
