"""``squall admin limits set|get|delete``: a namespace's limits, as wskadmin's ``limits``.

Limits are stored as OpenWhisk stores them (``UserLimits``: a namespace's throttles,
allowed kinds and whether its activations are stored), plus Squall's ``network`` (whether
its sandboxes have a way out under the egress rules). Servers read them through their
10-second caches (:mod:`squall.cli.admin_store`).
"""

from __future__ import annotations

from typing import Any

import click

from squall.cli.admin_store import Target, namespace_missing, pass_target
from squall.errors import NotFound, SquallError
from squall.store.contracts import Store as AdminStore

DEFAULT_LIMITS = "No limits found, default system limits apply"
LIMITS_DELETED = "Limits deleted"

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


def limits_set(namespace: str, updated: bool) -> str:
    verb = "updated" if updated else "set"
    return f"Limits successfully {verb} for '{namespace}'"


def limits_not_found(namespace: str) -> str:
    return f"Limits not found for '{namespace}'"


@click.group()
def limits() -> None:
    """Manage per-namespace limits (system defaults apply where none are set)."""


def _kinds(values: tuple[str, ...]) -> list[str] | None:
    """Kinds from repeated and comma-separated values, checked and resolved
    (``nodejs:default`` → the default Node kind); None when none were given."""
    from squall.entities.manifest import resolve_kind
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
