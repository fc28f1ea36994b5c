"""``squall namespace list|get``, in the shape of ``wsk namespace``."""

from __future__ import annotations

from typing import Any

import click

from squall.cli.client import entities
from squall.cli.client.common import Session, client_command
from squall.cli.client.names import DEFAULT_NAMESPACE

COLLECTIONS = ("packages", "actions", "triggers", "rules")


@click.group()
def namespace() -> None:
    """Work with namespaces."""


@namespace.command(name="list")
@client_command
def list_(session: Session) -> None:
    """List the namespaces the key may use."""
    with session.client() as client:
        reply = client.call(
            "GET", "/api/v1/namespaces", "Unable to obtain the list of available namespaces"
        )
    names = reply.body if isinstance(reply.body, list) else []
    session.out.table("namespaces", [[str(n)] for n in names], raw=names)


@namespace.command()
@click.argument("name", required=False)
@client_command
def get(session: Session, name: str | None) -> None:
    """List the packages, actions, triggers and rules in namespace NAME (default: own)."""
    ns = (name or session.config.namespace).strip("/")
    found: dict[str, list[dict[str, Any]]] = {}
    with session.client() as client:
        if ns == DEFAULT_NAMESPACE:  # say which namespace "_" is, as wsk does
            own = client.call("GET", "/api/v1/namespaces", "Unable to obtain the namespace")
            if isinstance(own.body, list) and own.body:
                ns = str(own.body[0])
        for collection in COLLECTIONS:
            reply = client.call(
                "GET",
                collection,
                f"Unable to obtain the list of entities for namespace '{ns}'",
                namespace=ns,
                params={"limit": 0},
            )
            found[collection] = reply.body if isinstance(reply.body, list) else []
    if session.out.json_mode:
        session.out.json(found)
        return
    session.out.text(f"Entities in namespace: {ns}")
    for collection, items in found.items():
        rows = [[entities.fqn(e), entities.visibility(e)] for e in items]
        session.out.table(collection, rows)
