"""``squall activation list|get|logs|result|poll``, in the shape of ``wsk activation``.

``poll`` lists the namespace's activations (with their logs) every ``--interval``
seconds and prints each one not printed before, oldest first, as
``Activation: 'name' (id)`` and its log lines as a JSON array, like ``wsk activation
poll``. It starts after the newest activation already recorded (or ``--since-*`` ago)
and stops on Ctrl-C, SIGTERM or after ``--exit`` seconds. A record is written when an
activation ends, so its ``start`` may be long before it is seen: the query's ``since``
trails the newest start seen by the longest an action may run (:data:`LAG_MS`), and the
ids already printed are remembered over that window. Squall records an activation as
*pending* as soon as it is accepted; poll waits for the final record, which has the logs.
"""

from __future__ import annotations

import re
import signal
import time
from datetime import datetime
from types import FrameType
from typing import Any

import click

from squall.cli.client import entities, exits
from squall.cli.client.common import Session, client_command
from squall.cli.client.errors import ClientError
from squall.cli.client.http import WhiskClient

PENDING = "pending"
STATUS = {0: "success", 1: "application error", 2: "developer error", 3: "internal error"}
#: ``response.status`` (OpenWhisk's names) → the column's words, as for the codes above.
STATUS_NAMES = {
    "success": STATUS[0],
    "application error": STATUS[1],
    "action developer error": STATUS[2],
    "whisk internal error": STATUS[3],
}
HEADERS = ("Datetime", "Activation ID", "Kind", "Start", "Duration", "Status", "Entity")
#: How long after its start an activation's record may appear: the longest time limit
#: (5 min) plus a minute of queueing and writing.
LAG_MS = 6 * 60 * 1000
LOG_PREFIX = re.compile(r"^\S+\s+(stdout|stderr):\s?")


class _Stop(Exception):
    """SIGTERM, ending ``poll`` as Ctrl-C does."""


def _list(client: WhiskClient, **params: str | int) -> list[dict[str, Any]]:
    reply = client.call(
        "GET", "activations", "Unable to obtain the list of activations", params=params
    )
    return reply.body if isinstance(reply.body, list) else []


def last_id(client: WhiskClient) -> str:
    """The id of the newest activation of the namespace."""
    newest = _list(client, limit=1)
    if not newest:
        raise ClientError("Activation list does not contain any activations.", exits.NOT_FOUND)
    return str(newest[0]["activationId"])


def _activation_id(client: WhiskClient, activation_id: str | None, last: bool) -> str:
    if last or activation_id is None:
        if activation_id is None and not last:
            raise ClientError("An activation ID is required (or --last).", exits.USAGE)
        return last_id(client)
    return activation_id


def _row(a: dict[str, Any]) -> list[str]:
    start = a.get("start")
    when = datetime.fromtimestamp(start / 1000).strftime("%Y-%m-%d %H:%M:%S") if start else ""
    kind = entities.annotation(a, "kind") or "trigger"
    if kind == "sequence" or kind == "trigger":
        temperature = "--"
    else:
        temperature = "cold" if entities.annotation(a, "initTime") is not None else "warm"
    path = str(entities.annotation(a, "path") or f"{a.get('namespace')}/{a.get('name')}")
    entity = path.split("/", 1)[-1] if "/" in path else path
    return [
        when,
        str(a.get("activationId")),
        str(kind),
        temperature,
        f"{a['duration']}ms" if "duration" in a else "--",  # a trigger's record has none
        _status(a, kind),
        f"{entity}:{a.get('version', '')}",
    ]


def _status(a: dict[str, Any], kind: object) -> str:
    """The status column: the summary's ``statusCode`` (an ended action's), the full
    record's ``response.status`` (``--full``: the REST API shows no code there), else a
    trigger's record (always a success, listed without a code) or a pending one."""
    code = a.get("statusCode")
    if isinstance(code, int):
        return STATUS.get(code, str(code))
    response = a.get("response")
    status = response.get("status") if isinstance(response, dict) else None
    if isinstance(status, str):
        return STATUS_NAMES.get(status, status)
    return STATUS[0] if kind == "trigger" else PENDING


@click.group()
def activation() -> None:
    """Work with activations."""


@activation.command(name="list")
@click.argument("name", required=False)
@click.option("-s", "--skip", type=int, default=0, help="Exclude the first SKIP activations.")
@click.option("-l", "--limit", type=int, default=30, help="Return at most LIMIT (max 200).")
@click.option("--since", type=int, default=None, help="Started after SINCE (epoch ms).")
@click.option("--upto", type=int, default=None, help="Started before UPTO (epoch ms).")
@click.option("-f", "--full", is_flag=True, help="Include full activation descriptions.")
@client_command
def list_(
    session: Session,
    name: str | None,
    skip: int,
    limit: int,
    since: int | None,
    upto: int | None,
    full: bool,
) -> None:
    """List activations (of action NAME, if given), newest first."""
    params: dict[str, str | int] = {"skip": skip, "limit": limit}
    if name:
        params["name"] = name
    if since is not None:
        params["since"] = since
    if upto is not None:
        params["upto"] = upto
    if full:
        params["docs"] = "true"
    with session.client() as client:
        found = _list(client, **params)
    if full and not session.out.json_mode:
        session.out.json(found)
        return
    session.out.table("activations", [_row(a) for a in found], HEADERS, raw=found)


@activation.command()
@click.argument("activation_id", required=False)
@click.option("-l", "--last", is_flag=True, help="The newest activation.")
@client_command
def get(session: Session, activation_id: str | None, last: bool) -> None:
    """Get activation ACTIVATION_ID."""
    with session.client() as client:
        found = _activation_id(client, activation_id, last)
        reply = client.call("GET", f"activations/{found}", f"Unable to get activation '{found}'")
    session.out.data(f"got activation {found}", reply.body)


@activation.command()
@click.argument("activation_id", required=False)
@click.option("-l", "--last", is_flag=True, help="The newest activation.")
@click.option("-r", "--strip", is_flag=True, help="Strip timestamps and stream names.")
@client_command
def logs(session: Session, activation_id: str | None, last: bool, strip: bool) -> None:
    """Print the logs of activation ACTIVATION_ID."""
    with session.client() as client:
        found = _activation_id(client, activation_id, last)
        reply = client.call(
            "GET", f"activations/{found}/logs", f"Unable to get logs for activation '{found}'"
        )
    lines = reply.body.get("logs", []) if isinstance(reply.body, dict) else []
    if strip:
        lines = [LOG_PREFIX.sub("", str(line)) for line in lines]
    if session.out.json_mode:
        session.out.json({"logs": lines})
        return
    for line in lines:
        session.out.text(str(line))


@activation.command()
@click.argument("activation_id", required=False)
@click.option("-l", "--last", is_flag=True, help="The newest activation.")
@client_command
def result(session: Session, activation_id: str | None, last: bool) -> None:
    """Print the result of activation ACTIVATION_ID."""
    with session.client() as client:
        found = _activation_id(client, activation_id, last)
        reply = client.call(
            "GET",
            f"activations/{found}/result",
            f"Unable to get result for activation '{found}'",
        )
    response = reply.body if isinstance(reply.body, dict) else {}
    session.out.json(response.get("result", response))


def _pending(record: dict[str, Any]) -> bool:
    """Squall records an accepted activation at once; it has no logs until it ends."""
    response = record.get("response")
    return isinstance(response, dict) and response.get("status") == PENDING


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


@activation.command()
@click.argument("name", required=False)
@click.option("-e", "--exit", "exit_after", type=int, default=0, help="Stop after SECONDS.")
@click.option("--since-seconds", type=int, default=0, help="Start SECONDS ago.")
@click.option("--since-minutes", type=int, default=0, help="Start MINUTES ago.")
@click.option("--since-hours", type=int, default=0, help="Start HOURS ago.")
@click.option("--since-days", type=int, default=0, help="Start DAYS ago.")
@click.option(
    "--interval", type=click.FloatRange(min=0.1), default=1.0, help="Seconds between polls."
)
@client_command
def poll(
    session: Session,
    name: str | None,
    exit_after: int,
    since_seconds: int,
    since_minutes: int,
    since_hours: int,
    since_days: int,
    interval: float,
) -> None:
    """Print the logs of activations (of action NAME, if given) as they complete."""
    back_s = since_seconds + 60 * (since_minutes + 60 * (since_hours + 24 * since_days))
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    ended = time.monotonic() + exit_after if exit_after > 0 else None
    session.out.text("Enter Ctrl-c to exit.")
    try:
        with session.client() as client:
            if back_s:
                since = int(time.time() * 1000) - back_s * 1000
            else:
                newest = _list(client, limit=1, **({"name": name} if name else {}))
                since = int(newest[0]["start"]) + 1 if newest else int(time.time() * 1000)
            session.out.text("Polling for activation logs")
            _poll(session, client, name, since, interval, ended)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _poll(
    session: Session,
    client: WhiskClient,
    name: str | None,
    since: int,
    interval: float,
    ended: float | None,
) -> None:
    reported: dict[str, int] = {}  # activation id -> start
    newest = since
    while ended is None or time.monotonic() < ended:
        params: dict[str, str | int] = {"docs": "true", "limit": 200, "since": since}
        if name:
            params["name"] = name
        try:
            found = _list(client, **params)
        except ClientError as error:
            # A server restart or a network blip must not end a poll; say so and go on.
            click.echo(f"warning: {error.format_message()}", err=True)
            found = []
        for record in reversed(found):  # oldest first
            activation_id = str(record.get("activationId"))
            if activation_id in reported or _pending(record):
                continue  # a pending record is replaced by the final one, with its logs
            start = int(record.get("start") or 0)
            reported[activation_id] = start
            newest = max(newest, start)
            if session.out.json_mode:
                session.out.json(record)
            else:
                session.out.text(f"\nActivation: '{record.get('name')}' ({activation_id})")
                session.out.json(record.get("logs") or [])
        window = max(since, newest - LAG_MS)
        if window > since:
            since = window
            reported = {k: v for k, v in reported.items() if v >= since}
        time.sleep(interval)
