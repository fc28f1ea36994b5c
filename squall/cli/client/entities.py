"""What the entity command groups share: get, delete and list of ``actions``,
``packages``, ``triggers`` and ``rules``, printed as ``wsk`` does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from squall.cli.client.common import Session
from squall.cli.client.http import Reply, WhiskClient
from squall.cli.client.names import QualifiedName

Row = Callable[[dict[str, Any]], Sequence[str]]


def fqn(entity: dict[str, Any]) -> str:
    return f"/{entity.get('namespace')}/{entity.get('name')}"


def visibility(entity: dict[str, Any]) -> str:
    return "shared" if entity.get("publish") else "private"


def annotation(entity: dict[str, Any], key: str) -> Any:
    for item in entity.get("annotations") or []:
        if isinstance(item, dict) and item.get("key") == key:
            return item.get("value")
    return None


def fetch(client: WhiskClient, collection: str, singular: str, name: QualifiedName) -> Reply:
    """GET one entity (``Unable to get trigger 't': ...`` when that fails)."""
    return client.call(
        "GET",
        f"{collection}/{name.url_path}",
        f"Unable to get {singular} '{name.name}'",
        namespace=name.namespace,
    )


def get_command(session: Session, collection: str, singular: str, name: str) -> None:
    """``squall <singular> get NAME``: ``ok: got <singular> NAME`` and the entity."""
    qname = session.name(name)
    with session.client() as client:
        reply = fetch(client, collection, singular, qname)
    session.out.data(f"got {singular} {name}", reply.body)


def delete(client: WhiskClient, collection: str, singular: str, name: QualifiedName) -> Reply:
    return client.call(
        "DELETE",
        f"{collection}/{name.url_path}",
        f"Unable to delete {singular} '{name.name}'",
        namespace=name.namespace,
    )


def list_command(
    session: Session,
    collection: str,
    row: Row,
    namespace: str | None,
    skip: int,
    limit: int,
    name_sort: bool = False,
) -> None:
    """``squall <group> list``: a table titled with the collection's name."""
    ns = session.name(f"/{namespace.strip('/')}/x").namespace if namespace else None
    with session.client() as client:
        reply = client.call(
            "GET",
            collection,
            f"Unable to obtain the list of {collection}",
            namespace=ns,
            params={"skip": skip, "limit": limit},
        )
    found: list[dict[str, Any]] = reply.body if isinstance(reply.body, list) else []
    if name_sort:
        found.sort(key=lambda e: str(e.get("name")))
    session.out.table(collection, [list(row(e)) for e in found], raw=found)


def list_options(f: Any) -> Any:
    """``[NAMESPACE]``, ``--skip``, ``--limit`` and ``--name-sort``, as ``wsk ... list``."""
    f = click.option("-n", "--name-sort", is_flag=True, help="Sort by name.")(f)
    f = click.option("-l", "--limit", type=int, default=30, help="Return at most LIMIT.")(f)
    f = click.option("-s", "--skip", type=int, default=0, help="Exclude the first SKIP.")(f)
    return click.argument("namespace_arg", metavar="[NAMESPACE]", required=False)(f)
