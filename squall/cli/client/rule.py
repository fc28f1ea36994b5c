"""``squall rule create|update|enable|disable|status|get|list|delete``, as ``wsk rule``."""

from __future__ import annotations

from typing import Any

import click

from squall.cli.client import entities
from squall.cli.client.common import Session, client_command


@click.group()
def rule() -> None:
    """Work with rules."""


def _put(session: Session, overwrite: bool, name: str, trigger: str, action: str) -> None:
    qname = session.name(name)
    body = {"trigger": str(session.name(trigger)), "action": str(session.name(action))}
    verb = "update" if overwrite else "create"
    with session.client() as client:
        reply = client.call(
            "PUT",
            f"rules/{qname.url_path}",
            f"Unable to {verb} rule '{name}'",
            namespace=qname.namespace,
            params={"overwrite": "true" if overwrite else "false"},
            json=body,
        )
    if session.out.json_mode:
        session.out.json(reply.body)
    session.out.ok(f"{verb}d rule {name}")


@rule.command()
@click.argument("name")
@click.argument("trigger")
@click.argument("action")
@client_command
def create(session: Session, name: str, trigger: str, action: str) -> None:
    """Create rule NAME: fire ACTION when TRIGGER fires (enabled at once)."""
    _put(session, False, name, trigger, action)


@rule.command()
@click.argument("name")
@click.argument("trigger")
@click.argument("action")
@client_command
def update(session: Session, name: str, trigger: str, action: str) -> None:
    """Update rule NAME, or create it if it does not exist."""
    _put(session, True, name, trigger, action)


def _set_status(session: Session, name: str, status: str, verb: str) -> None:
    qname = session.name(name)
    with session.client() as client:
        client.call(
            "POST",
            f"rules/{qname.url_path}",
            f"Unable to {verb} rule '{name}'",
            namespace=qname.namespace,
            json={"status": status},
        )
    if session.out.json_mode:
        session.out.json({"name": qname.name, "status": status})
    session.out.ok(f"{verb}d rule {name}")


@rule.command()
@click.argument("name")
@client_command
def enable(session: Session, name: str) -> None:
    """Enable rule NAME."""
    _set_status(session, name, "active", "enable")


@rule.command()
@click.argument("name")
@client_command
def disable(session: Session, name: str) -> None:
    """Disable rule NAME."""
    _set_status(session, name, "inactive", "disable")


@rule.command()
@click.argument("name")
@client_command
def status(session: Session, name: str) -> None:
    """Print whether rule NAME is active."""
    qname = session.name(name)
    with session.client() as client:
        found = entities.fetch(client, "rules", "rule", qname).body
    state = found.get("status") if isinstance(found, dict) else None
    if session.out.json_mode:
        session.out.json({"name": qname.name, "status": state})
    session.out.ok(f"rule {name} is {state}")


@rule.command()
@click.argument("name")
@client_command
def get(session: Session, name: str) -> None:
    """Get rule NAME."""
    entities.get_command(session, "rules", "rule", name)


@rule.command(name="list")
@entities.list_options
@client_command
def list_(
    session: Session, namespace_arg: str | None, skip: int, limit: int, name_sort: bool
) -> None:
    """List the rules."""

    def row(r: dict[str, Any]) -> list[str]:
        return [entities.fqn(r), entities.visibility(r), str(r.get("status", ""))]

    entities.list_command(session, "rules", row, namespace_arg, skip, limit, name_sort)


@rule.command()
@click.argument("name")
@click.option("--disable", is_flag=True, help="Disable the rule before deleting it.")
@client_command
def delete(session: Session, name: str, disable: bool) -> None:
    """Delete rule NAME."""
    qname = session.name(name)
    with session.client() as client:
        if disable:
            client.call(
                "POST",
                f"rules/{qname.url_path}",
                f"Unable to disable rule '{name}'",
                namespace=qname.namespace,
                json={"status": "inactive"},
            )
        reply = entities.delete(client, "rules", "rule", qname)
    if session.out.json_mode:
        session.out.json(reply.body)
    session.out.ok(f"deleted rule {name}")
