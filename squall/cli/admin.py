"""``squall admin``: the ``wskadmin`` of Squall, for operators, acting on the store directly.

::

    squall admin user create|delete|get|list|whois   namespaces and their keys
    squall admin user rotate-action-key              the key actions get (__OW_API_KEY)
    squall admin limits set|get|delete               per-namespace limits (admin_limits)
    squall admin db migrate|stats                    the store itself
    squall admin parameter-key new|rotate            the key secrets are encrypted with

Squall has one subject per namespace (OpenWhisk's subject and namespace are one name), so
``user create NAMESPACE`` creates both. Keys are stored hashed: a key is printed once, when
it is created or rotated (``--force``), and never again. Messages follow wskadmin's where it
has one. Which store: see :mod:`squall.cli.admin_store`.

A namespace's *action key* (the ``uuid:key`` its actions get, ``docs/security.md``) is
never printed either: ``user rotate-action-key`` deletes it, and the next run that needs
one mints a new one; ``user delete`` deletes it with the subject.
"""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

import click

from squall.cli.admin_keys import parameter_key
from squall.cli.admin_limits import limits
from squall.cli.admin_store import (
    Target,
    describe,
    format_stats,
    namespace_missing,
    pass_target,
    postgres_schema_version,
    postgres_stats,
    sqlite_path,
    sqlite_schema_version,
    sqlite_stats,
)
from squall.config import Settings
from squall.errors import Conflict, NotFound, SquallError
from squall.store.contracts import Store as AdminStore

# wskadmin's words (CommandMessages), one space where it has two.
NAMESPACE_EXISTS = "Namespace already exists"
SHORT_NAME = "Subject name must be at least 5 characters"
INVALID_UUID = "authorization id is not a valid UUID"
SHORT_KEY = "authorization key must be at least 64 characters long"
SUBJECT_DELETED = "Subject deleted"
SUBJECT_MISSING = "Subject to delete not found"
MIN_NAME_LENGTH = 5
MIN_KEY_LENGTH = 64


def action_key_revoked(namespace: str) -> str:
    return (
        f"Action key of '{namespace}' revoked; the next action run mints a new one "
        "(controllers and invokers may go on using the old one from their caches for up "
        "to 10 s)"
    )


def action_key_missing(namespace: str) -> str:
    return f"'{namespace}' has no action key; the next action run that needs one mints it"


@click.group()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory of the SQLite store (default $SQUALL_HOME or ./.squall).",
)
@click.option(
    "--store",
    "store_url",
    default=None,
    help="URL of a shared store, e.g. postgresql://... (default $SQUALL_STORE_URL; "
    "without one, the SQLite file under --home).",
)
@click.pass_context
def admin(ctx: click.Context, home: Path | None, store_url: str | None) -> None:
    """Manage namespaces, keys, limits and the store (Squall's wskadmin)."""
    ctx.obj = Target(Settings.from_env(home=home, store_url=store_url))


# -- user -------------------------------------------------------------------------------


@admin.group()
def user() -> None:
    """Manage namespaces (subjects) and their keys."""


def _check_namespace(namespace: str) -> str:
    from squall.entities.names import check_name

    if len(namespace) < MIN_NAME_LENGTH:
        raise click.BadParameter(SHORT_NAME, param_hint="NAMESPACE")
    try:
        return check_name(namespace)
    except SquallError as error:
        raise click.BadParameter(error.message, param_hint="NAMESPACE") from None


def _check_auth(auth: str | None) -> tuple[str | None, str | None]:
    if auth is None:
        return None, None
    uuid, sep, key = auth.partition(":")
    if not sep:
        raise click.BadParameter(f"failed to determine authorization id and key: {auth}")
    if len(key) < MIN_KEY_LENGTH:
        raise click.BadParameter(SHORT_KEY, param_hint="--auth")
    try:
        uuidlib.UUID(uuid)
    except ValueError:
        raise click.BadParameter(INVALID_UUID, param_hint="--auth") from None
    return uuid, key


@user.command("create")
@click.argument("namespace")
@click.option("-u", "--auth", default=None, help="The uuid:key to create the subject with.")
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Replace the key of an existing namespace (keeps its uuid unless --auth is given).",
)
@pass_target
def user_create(target: Target, namespace: str, auth: str | None, force: bool) -> None:
    """Create a namespace and print its uuid:key (shown only now)."""
    namespace = _check_namespace(namespace)
    uuid, key = _check_auth(auth)

    async def work(store: AdminStore) -> str:
        try:
            subject = await store.auth.create_subject(namespace, uuid=uuid, key=key, rotate=force)
        except Conflict as error:
            if error.message == NAMESPACE_EXISTS:
                raise Conflict(f"{NAMESPACE_EXISTS} (--force replaces its key)") from None
            raise
        return subject.auth

    click.echo(target.run(work))


@user.command("delete")
@click.argument("namespace")
@pass_target
def user_delete(target: Target, namespace: str) -> None:
    """Delete a namespace's credentials (its key and its action key) and limits (its
    entities and activations stay)."""

    async def work(store: AdminStore) -> str:
        try:
            await store.auth.delete_subject(namespace)
        except NotFound:
            raise NotFound(SUBJECT_MISSING) from None
        return SUBJECT_DELETED

    click.echo(target.run(work))


@user.command("rotate-action-key")
@click.argument("namespace")
@pass_target
def user_rotate_action_key(target: Target, namespace: str) -> None:
    """Revoke the key actions of a namespace get; the next run mints a new one."""

    async def work(store: AdminStore) -> str:
        try:
            await store.auth.get_subject(namespace)
        except NotFound:
            raise NotFound(namespace_missing(namespace)) from None
        if not await store.auth.delete_action_key(namespace):
            return action_key_missing(namespace)
        return action_key_revoked(namespace)

    click.echo(target.run(work))


@user.command("get")
@click.argument("namespace")
@pass_target
def user_get(target: Target, namespace: str) -> None:
    """Print a namespace's uuid (its key is stored hashed and cannot be shown)."""

    async def work(store: AdminStore) -> str:
        try:
            return (await store.auth.get_subject(namespace)).uuid
        except NotFound:
            raise NotFound(namespace_missing(namespace)) from None

    click.echo(target.run(work))
    click.echo(
        "(the key is stored hashed and cannot be shown; "
        f"'squall admin user create {namespace} --force' issues a new one)",
        err=True,
    )


@user.command("list")
@pass_target
def user_list(target: Target) -> None:
    """List namespaces with their uuids, one per line."""

    async def work(store: AdminStore) -> list[str]:
        return [f"{s.namespace}\t{s.uuid}" for s in await store.auth.list_subjects()]

    for line in target.run(work):
        click.echo(line)


@user.command("whois")
@click.argument("auth")
@pass_target
def user_whois(target: Target, auth: str) -> None:
    """Identify the namespace of a uuid:key."""
    uuid, sep, key = auth.partition(":")
    if not sep:
        raise click.BadParameter(f"failed to determine authorization id and key: {auth}")

    async def work(store: AdminStore) -> str:
        subject = await store.auth.authenticate(uuid, key)
        if subject is None:
            raise NotFound("Subject not found for the given key")
        return f"subject: {subject.namespace}\nnamespace: {subject.namespace}"

    click.echo(target.run(work))


# -- db ---------------------------------------------------------------------------------


@admin.group()
def db() -> None:
    """Maintain the store: schema migrations and statistics."""


@db.command("migrate")
@pass_target
def db_migrate(target: Target) -> None:
    """Bring the store's schema up to date (servers do it when they start, too)."""
    settings = target.settings
    path = sqlite_path(settings)

    def version() -> int | None:
        if path is not None:
            return sqlite_schema_version(path)
        return postgres_schema_version(settings.store_url)

    async def work(store: AdminStore) -> None:
        return None  # opening the store migrated it

    try:
        before = version()
        target.run(work)
        after = version()
    except SquallError as error:
        raise click.ClickException(error.message) from None
    where = describe(settings)
    if before is None or before == 0:
        click.echo(f"Created the schema of {where} at version {after}")
    elif before == after:
        click.echo(f"Schema of {where} is up to date at version {after}")
    else:
        click.echo(f"Migrated {where} from schema version {before} to {after}")


@db.command("stats")
@pass_target
def db_stats(target: Target) -> None:
    """Count namespaces, entities per collection and activations; show schema and size."""
    settings = target.settings
    path = sqlite_path(settings)
    if path is not None:
        if not path.exists():
            raise click.ClickException(f"no store at {path}")
        try:
            stats = sqlite_stats(path)
        except Exception as error:  # sqlite3.Error and OS errors alike: one line
            raise click.ClickException(f"cannot read {path}: {error}") from None
    else:
        stats = target.run(lambda store: postgres_stats(store, settings))
    for line in format_stats(stats):
        click.echo(line)


admin.add_command(limits)
admin.add_command(parameter_key)
