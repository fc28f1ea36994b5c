"""``squall trigger create|update|fire|get|list|delete``, in the shape of ``wsk trigger``.

A trigger created with ``--feed`` is stored with the ``feed`` annotation and then, as
``wsk`` does (the server does not), the feed action is invoked blocking with
``lifecycleEvent: CREATE``, ``triggerName``, ``authKey`` and the ``-p`` parameters; if
the feed refuses, the trigger is deleted again. Deleting such a trigger first invokes the
feed with ``DELETE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from squall.cli.client import entities, exits
from squall.cli.client.action import invoke
from squall.cli.client.common import Session, client_command
from squall.cli.client.errors import ClientError
from squall.cli.client.http import WhiskClient
from squall.cli.client.names import QualifiedName, parse
from squall.cli.client.output import Output
from squall.cli.client.params import Pairs, annotation_options, collect, key_values, param_options

FEED = "feed"


def feed_event(
    client: WhiskClient,
    out: Output,
    feed: QualifiedName,
    trigger: QualifiedName,
    event: str,
    parameters: dict[str, Any] | None = None,
) -> None:
    """Invoke ``feed`` for ``event`` on ``trigger``; a ClientError if the feed failed."""
    args = {
        **(parameters or {}),
        "lifecycleEvent": event,
        "triggerName": str(trigger),
        "authKey": client.config.auth,
    }
    reply = invoke(client, feed, args, blocking=True)
    body = reply.body if isinstance(reply.body, dict) else {}
    activation_id = body.get("activationId")
    response: dict[str, Any] = body.get("response") or {}
    if reply.status != 200 or not response.get("success"):
        result = response.get("result")
        reason = result.get("error") if isinstance(result, dict) else None
        raise ClientError(
            f"Unable to invoke trigger '{trigger.name}' feed action '{feed}'; feed is not "
            f"configured: {reason or f'activation {activation_id} did not succeed'}",
            exits.for_status(reply.status) if reply.status >= 400 else exits.ERROR,
        )
    out.ok(f"invoked {feed} with id {activation_id}")


@click.group()
def trigger() -> None:
    """Work with triggers."""


def _put_options(f: Any) -> Any:
    f = param_options(annotation_options(f))
    return click.argument("name")(f)


def _put(
    session: Session,
    overwrite: bool,
    name: str,
    parameters: dict[str, Any],
    annotations: dict[str, Any],
    feed: str | None,
) -> None:
    qname = session.name(name)
    body: dict[str, Any] = {}
    qfeed = parse(feed, session.config.namespace) if feed is not None else None
    if qfeed is not None:
        annotations = {**annotations, FEED: str(qfeed)}
    elif parameters:
        body["parameters"] = key_values(parameters)  # a feed gets them instead
    if annotations:
        body["annotations"] = key_values(annotations)
    verb = "update" if overwrite else "create"
    with session.client() as client:
        reply = client.call(
            "PUT",
            f"triggers/{qname.url_path}",
            f"Unable to {verb} trigger '{name}'",
            namespace=qname.namespace,
            params={"overwrite": "true" if overwrite else "false"},
            json=body,
        )
        if qfeed is not None:
            try:
                feed_event(client, session.out, qfeed, qname, "CREATE", parameters)
            except ClientError:
                entities.delete(client, "triggers", "trigger", qname)
                raise
    if session.out.json_mode:
        session.out.json(reply.body)
    session.out.ok(f"{verb}d trigger {name}")


@trigger.command()
@_put_options
@click.option("-f", "--feed", default=None, metavar="ACTION", help="Trigger feed ACTION.")
@client_command
def create(
    session: Session,
    name: str,
    param: Pairs,
    param_file: Path | None,
    annotation: Pairs,
    annotation_file: Path | None,
    feed: str | None,
) -> None:
    """Create trigger NAME (with --feed: configured by that feed action)."""
    parameters = collect(param, param_file)
    annotations = collect(annotation, annotation_file, "annotation")
    _put(session, False, name, parameters, annotations, feed)


@trigger.command()
@_put_options
@client_command
def update(
    session: Session,
    name: str,
    param: Pairs,
    param_file: Path | None,
    annotation: Pairs,
    annotation_file: Path | None,
) -> None:
    """Update trigger NAME, or create it if it does not exist."""
    parameters = collect(param, param_file)
    annotations = collect(annotation, annotation_file, "annotation")
    _put(session, True, name, parameters, annotations, None)


@trigger.command()
@click.argument("name")
@param_options
@client_command
def fire(session: Session, name: str, param: Pairs, param_file: Path | None) -> None:
    """Fire trigger NAME with the -p parameters."""
    qname = session.name(name)
    with session.client() as client:
        reply = client.call(
            "POST",
            f"triggers/{qname.url_path}",
            f"Unable to fire trigger '{name}'",
            namespace=qname.namespace,
            json=collect(param, param_file),
        )
    body = reply.body if isinstance(reply.body, dict) else {}
    if session.out.json_mode:
        session.out.json(body)
    if reply.status == 204:
        session.out.ok(f"triggered {qname} (no active rules: no activation)")
    else:
        session.out.ok(f"triggered {qname} with id {body.get('activationId')}")


@trigger.command()
@click.argument("name")
@client_command
def get(session: Session, name: str) -> None:
    """Get trigger NAME."""
    entities.get_command(session, "triggers", "trigger", name)


@trigger.command(name="list")
@entities.list_options
@client_command
def list_(
    session: Session, namespace_arg: str | None, skip: int, limit: int, name_sort: bool
) -> None:
    """List the triggers."""

    def row(t: dict[str, Any]) -> list[str]:
        return [entities.fqn(t), entities.visibility(t)]

    entities.list_command(session, "triggers", row, namespace_arg, skip, limit, name_sort)


@trigger.command()
@click.argument("name")
@client_command
def delete(session: Session, name: str) -> None:
    """Delete trigger NAME (after telling its feed, if it has one)."""
    qname = session.name(name)
    with session.client() as client:
        current = entities.fetch(client, "triggers", "trigger", qname).body
        feed = entities.annotation(current, FEED) if isinstance(current, dict) else None
        if isinstance(feed, str):
            feed_event(client, session.out, parse(feed), qname, "DELETE")
        reply = entities.delete(client, "triggers", "trigger", qname)
    if session.out.json_mode:
        session.out.json(reply.body)
    session.out.ok(f"deleted trigger {name}")
