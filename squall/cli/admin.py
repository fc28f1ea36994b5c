"""``squall admin``: the ``wskadmin`` of Squall, for operators, acting on the store directly.

::

    squall admin user create|delete|get|list|whois   namespaces and their keys
    squall admin user rotate-action-key              the key actions get (__OW_API_KEY)
    squall admin limits set|get|delete               per-namespace limits
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

import asyncio
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from squall.cli.admin_keys import parameter_key
from squall.cli.admin_store import (
    describe,
    format_stats,
    open_admin_store,
    postgres_schema_version,
    postgres_stats,
    sqlite_path,
    sqlite_schema_version,
    sqlite_stats,
)
from squall.config import Settings
from squall.errors import Conflict, NotFound, SquallError
from squall.store.contracts import Store as AdminStore

T = TypeVar("T")

# wskadmin's words (CommandMessages), one space where it has two.
NAMESPACE_EXISTS = "Namespace already exists"
SHORT_NAME = "Subject name must be at least 5 characters"
INVALID_UUID = "authorization id is not a valid UUID"
SHORT_KEY = "authorization key must be at least 64 characters long"
SUBJECT_DELETED = "Subject deleted"
SUBJECT_MISSING = "Subject to delete not found"
DEFAULT_LIMITS = "No limits found, default system limits apply"
LIMITS_DELETED = "Limits deleted"
MIN_NAME_LENGTH = 5
MIN_KEY_LENGTH = 64

# Limit names as OpenWhisk stores them (UserLimits), in wskadmin's display order.
INVOCATIONS_PER_MINUTE = "invocationsPerMinute"
CONCURRENT_INVOCATIONS = "concurrentInvocations"
FIRES_PER_MINUTE = "firesPerMinute"
ALLOWED_KINDS = "allowedKinds"
STORE_ACTIVATIONS = "storeActivations"
# Squall's own: whether the namespace's sandboxes have a network (egress rules apply).
NETWORK = "network"
LIMIT_ORDER = (
    CONCURRENT_INVOCATIONS,
    INVOCATIONS_PER_MINUTE,
    FIRES_PER_MINUTE,
    ALLOWED_KINDS,
    STORE_ACTIVATIONS,
    NETWORK,
)


def namespace_missing(namespace: str) -> str:
    return f"no identities found for namespace '{namespace}'"


def action_key_revoked(namespace: str) -> str:
    return (
        f"Action key of '{namespace}' revoked; the next action run mints a new one "
        "(controllers and invokers may go on using the old one from their caches for up "
        "to 10 s)"
    )


def action_key_missing(namespace: str) -> str:
    return f"'{namespace}' has no action key; the next action run that needs one mints it"


def limits_set(namespace: str, updated: bool) -> str:
    verb = "updated" if updated else "set"
    return f"Limits successfully {verb} for '{namespace}'"


def limits_not_found(namespace: str) -> str:
    return f"Limits not found for '{namespace}'"


class Target:
    """The store the commands act on (from the group's options)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, work: Callable[[AdminStore], Awaitable[T]]) -> T:
        """Open the store, run ``work`` on it, close it; Squall errors become a one-line
        message and exit status 1."""

        async def main() -> T:
            async with open_admin_store(self.settings) as store:
                return await work(store)

        try:
            return asyncio.run(main())
        except SquallError as error:
            raise click.ClickException(error.message) from None


pass_target = click.make_pass_decorator(Target)


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


# -- limits -----------------------------------------------------------------------------


@admin.group()
def limits() -> None:
    """Manage per-namespace limits (system defaults apply where none are set)."""


def _kinds(values: tuple[str, ...]) -> list[str] | None:
    """Kinds from repeated and comma-separated values, checked and resolved
    (``nodejs:default`` → the default Node kind); None when none were given."""
    from squall.entities.kinds import resolve_kind
    from squall.entities.sequence import SEQUENCE_KIND

    names = [k.strip() for value in values for k in value.split(",") if k.strip()]
    if not names:
        return None
    kinds: list[str] = []
    for name in names:
        try:
            kind = name if name == SEQUENCE_KIND else resolve_kind(name)
        except SquallError as error:
            raise click.BadParameter(error.message, param_hint="--allowedKinds") from None
        if kind not in kinds:
            kinds.append(kind)
    return kinds


@limits.command("set")
@click.argument("namespace")
@click.option(
    "--invocationsPerMinute",
    "--invocations-per-minute",
    "invocations_per_minute",
    type=click.IntRange(min=0),
    help="Invocations per minute allowed.",
)
@click.option(
    "--concurrentInvocations",
    "--concurrent-invocations",
    "concurrent_invocations",
    type=click.IntRange(min=0),
    help="Concurrent invocations allowed.",
)
@click.option(
    "--firesPerMinute",
    "--fires-per-minute",
    "fires_per_minute",
    type=click.IntRange(min=0),
    help="Trigger fires per minute allowed.",
)
@click.option(
    "--allowedKinds",
    "--allowed-kinds",
    "allowed_kinds",
    multiple=True,
    help="Runtime kinds actions may have (repeat, or separate with commas).",
)
@click.option(
    "--enableStoreActivations/--disableStoreActivations",
    "--enable-store-activations/--disable-store-activations",
    "store_activations",
    default=None,
    help="Store activation records of this namespace (default: stored).",
)
@click.option(
    "--network",
    type=click.Choice(["egress", "none"]),
    default=None,
    help="Sandbox network: egress (a way out, under the egress rules) or none (loopback "
    "only); default: the invoker's --sandbox-network.",
)
@pass_target
def limits_set_cmd(
    target: Target,
    namespace: str,
    invocations_per_minute: int | None,
    concurrent_invocations: int | None,
    fires_per_minute: int | None,
    allowed_kinds: tuple[str, ...],
    store_activations: bool | None,
    network: str | None,
) -> None:
    """Set a namespace's limits. As in wskadmin, they replace the limits set before:
    a limit not given here is back at the system default."""
    given: dict[str, Any] = {
        INVOCATIONS_PER_MINUTE: invocations_per_minute,
        CONCURRENT_INVOCATIONS: concurrent_invocations,
        FIRES_PER_MINUTE: fires_per_minute,
        ALLOWED_KINDS: _kinds(allowed_kinds),
        STORE_ACTIVATIONS: store_activations,
        NETWORK: network,
    }
    new = {k: v for k, v in given.items() if v is not None}

    async def work(store: AdminStore) -> str:
        try:
            await store.auth.get_subject(namespace)
        except NotFound:
            raise NotFound(namespace_missing(namespace)) from None
        before = await store.auth.get_limits(namespace)
        await store.auth.set_limits(namespace, new)
        return limits_set(namespace, updated=bool(before))

    click.echo(target.run(work))


@limits.command("get")
@click.argument("namespace")
@pass_target
def limits_get(target: Target, namespace: str) -> None:
    """Show a namespace's limits, one ``name = value`` per line."""

    async def work(store: AdminStore) -> dict[str, Any]:
        return await store.auth.get_limits(namespace)

    stored = target.run(work)
    if not stored:
        click.echo(DEFAULT_LIMITS)
        return
    for name in (*LIMIT_ORDER, *sorted(set(stored) - set(LIMIT_ORDER))):
        if name in stored:
            click.echo(f"{name} = {_show(stored[name])}")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


@limits.command("delete")
@click.argument("namespace")
@pass_target
def limits_delete(target: Target, namespace: str) -> None:
    """Delete a namespace's limits (system defaults apply again)."""

    async def work(store: AdminStore) -> str:
        if not await store.auth.get_limits(namespace):
            raise NotFound(limits_not_found(namespace))
        await store.auth.set_limits(namespace, {})
        return LIMITS_DELETED

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


admin.add_command(parameter_key)
