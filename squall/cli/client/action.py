"""``squall action create|update|invoke|get|list|delete``, in the shape of ``wsk action``.

The functions :func:`action_body`, :func:`put_action` and :func:`invoke` are the Python
API behind the commands (``squall dev`` and scripts may use them); their signatures are
stable.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import click

from squall.cli.client import entities, exits
from squall.cli.client.action_exec import code_exec, sequence_exec
from squall.cli.client.common import Session, client_command
from squall.cli.client.errors import ClientError
from squall.cli.client.http import Reply, WhiskClient
from squall.cli.client.names import QualifiedName
from squall.cli.client.params import Pairs, annotation_options, collect, key_values, param_options

WEB_CHOICES = ("true", "yes", "false", "no", "raw")


def web_annotations(web: str | None, web_secure: str | None) -> dict[str, Any]:
    """The annotations ``--web`` and ``--web-secure`` stand for, as ``wsk`` sets them."""
    annotations: dict[str, Any] = {}
    if web is not None:
        exported = web in ("true", "yes", "raw")
        annotations["web-export"] = exported
        annotations["raw-http"] = web == "raw"
        if exported:
            annotations["final"] = True
    if web_secure is not None:
        if web is None or web in ("false", "no"):
            raise ClientError(
                "The --web-secure option is only valid when the --web option is enabled."
            )
        if web_secure.lower() == "true":
            annotations["require-whisk-auth"] = secrets.randbits(53)
        elif web_secure.lower() == "false":
            annotations["require-whisk-auth"] = False
        else:
            annotations["require-whisk-auth"] = web_secure
    return annotations


def action_body(
    namespace: str,
    artifact: Path | None = None,
    *,
    kind: str | None = None,
    main: str | None = None,
    sequence: str | None = None,
    docker: str | None = None,
    parameters: dict[str, Any] | None = None,
    annotations: dict[str, Any] | None = None,
    timeout_ms: int | None = None,
    memory_mb: int | None = None,
    logsize_mb: int | None = None,
    concurrency: int | None = None,
) -> dict[str, Any]:
    """The PUT body of an action; fields left None are left out (an update keeps them)."""
    body: dict[str, Any] = {}
    if sequence is not None:
        if artifact is not None:
            raise ClientError("A sequence takes no code file (--sequence a,b,c only)")
        if kind is not None:
            raise ClientError("A kind may not be specified for a sequence")
        body["exec"] = sequence_exec(sequence, namespace)
    elif docker is not None:
        # OpenWhisk's --docker: a blackbox action of that image, with the file as its code
        # (a zip or a text file) or without code (the image brings it).
        if kind is not None:
            raise ClientError("A kind may not be specified for a --docker action")
        body["exec"] = {"kind": "blackbox", "image": docker}
        if artifact is not None:
            body["exec"] = {**code_exec(artifact, "blackbox", main), "image": docker}
        elif main is not None:
            body["exec"]["main"] = main
    elif artifact is not None:
        body["exec"] = code_exec(artifact, kind, main)
    elif kind is not None or main is not None:
        raise ClientError("--kind and --main need a code file")
    if parameters:
        body["parameters"] = key_values(parameters)
    if annotations:
        body["annotations"] = key_values(annotations)
    limits = {
        key: value
        for key, value in (
            ("timeout", timeout_ms),
            ("memory", memory_mb),
            ("logs", logsize_mb),
            ("concurrency", concurrency),
        )
        if value is not None
    }
    if limits:
        body["limits"] = limits
    return body


def put_action(
    client: WhiskClient, name: QualifiedName, body: dict[str, Any], overwrite: bool
) -> Reply:
    """Create (``overwrite`` false: 409 if it exists) or update the action."""
    verb = "update" if overwrite else "create"
    return client.call(
        "PUT",
        f"actions/{name.url_path}",
        f"Unable to {verb} action '{name.name}'",
        namespace=name.namespace,
        params={"overwrite": "true" if overwrite else "false"},
        json=body,
    )


def invoke(
    client: WhiskClient,
    name: QualifiedName,
    parameters: dict[str, Any] | None = None,
    *,
    blocking: bool = False,
    result: bool = False,
) -> Reply:
    """Invoke the action; a blocking answer for a failed action (502) is returned too."""
    query = {"blocking": "true" if blocking or result else "false"}
    if result:
        query["result"] = "true"
    return client.call(
        "POST",
        f"actions/{name.url_path}",
        f"Unable to invoke action '{name.name}'",
        namespace=name.namespace,
        params=query,
        json=parameters or {},
        accept=(502,) if blocking or result else (),
    )


@click.group()
def action() -> None:
    """Work with actions."""


def _put_options(f: Any) -> Any:
    f = param_options(annotation_options(f))
    for option in reversed(
        [
            click.option("--kind", default=None, help="The KIND of the action runtime."),
            click.option("--main", default=None, help="The name of the action entry point."),
            click.option(
                "--sequence", default=None, metavar="A,B,C", help="A sequence of these actions."
            ),
            click.option(
                "--docker",
                default=None,
                metavar="IMAGE",
                help="A blackbox action run from this Docker image (ARTIFACT optional).",
            ),
            click.option("-t", "--timeout", type=int, default=None, help="Time limit in ms."),
            click.option("-m", "--memory", type=int, default=None, help="Memory limit in MB."),
            click.option("-l", "--logsize", type=int, default=None, help="Log size limit in MB."),
            click.option(
                "-c", "--concurrency", type=int, default=None, help="Max activations per container."
            ),
            click.option("--web", type=click.Choice(WEB_CHOICES), default=None, help="Web action."),
            click.option(
                "--web-secure", default=None, metavar="SECRET", help="Secure a web action."
            ),
        ]
    ):
        f = option(f)
    f = click.argument("artifact", required=False, type=click.Path(path_type=Path))(f)
    return click.argument("name")(f)


def _put(session: Session, overwrite: bool, name: str, artifact: Path | None, **o: Any) -> None:
    qname = session.name(name)
    if not overwrite and artifact is None and o["sequence"] is None and o["docker"] is None:
        raise ClientError("An action name and code artifact are required.", exits.USAGE)
    annotations = collect(o["annotation"], o["annotation_file"], "annotation")
    annotations.update(web_annotations(o["web"], o["web_secure"]))
    body = action_body(
        session.config.namespace,
        artifact,
        kind=o["kind"],
        main=o["main"],
        sequence=o["sequence"],
        docker=o["docker"],
        parameters=collect(o["param"], o["param_file"]),
        annotations=annotations,
        timeout_ms=o["timeout"],
        memory_mb=o["memory"],
        logsize_mb=o["logsize"],
        concurrency=o["concurrency"],
    )
    with session.client() as client:
        reply = put_action(client, qname, body, overwrite)
    if session.out.json_mode:
        session.out.json(reply.body)
    session.out.ok(f"{'updated' if overwrite else 'created'} action {name}")


@action.command()
@_put_options
@client_command
def create(session: Session, name: str, artifact: Path | None, **options: Any) -> None:
    """Create action NAME from ARTIFACT (a .js, .py or .zip file) or --sequence."""
    _put(session, False, name, artifact, **options)


@action.command()
@_put_options
@client_command
def update(session: Session, name: str, artifact: Path | None, **options: Any) -> None:
    """Update action NAME, or create it if it does not exist."""
    _put(session, True, name, artifact, **options)


@action.command(name="invoke")
@click.argument("name")
@param_options
@click.option("-b", "--blocking", is_flag=True, help="Wait for the activation to finish.")
@click.option("-r", "--result", is_flag=True, help="Print only the result (implies --blocking).")
@client_command
def invoke_command(
    session: Session,
    name: str,
    param: Pairs,
    param_file: Path | None,
    blocking: bool,
    result: bool,
) -> None:
    """Invoke action NAME."""
    qname = session.name(name)
    with session.client() as client:
        reply = invoke(client, qname, collect(param, param_file), blocking=blocking, result=result)
    out = session.out
    body = reply.body if isinstance(reply.body, dict) else {}
    activation_id = reply.headers.get("x-openwhisk-activation-id") or body.get("activationId")
    if reply.status == 202 and (blocking or result):
        out.ok(f"invoked {qname} with id {activation_id}")
        if out.json_mode:
            out.json(reply.body)
        raise ClientError(
            f"the action is still running after the blocking wait; get its result later "
            f"with 'squall activation result {activation_id}'",
            exits.ACCEPTED,
        )
    if result:
        out.json(reply.body)
    else:
        out.ok(f"invoked {qname} with id {activation_id}")
        if blocking or out.json_mode:
            out.json(reply.body)
    if reply.status == 502:
        raise SystemExit(exits.APP_ERROR)


@action.command()
@click.argument("name")
@click.option("--url", is_flag=True, help="Print the action's web URL only.")
@click.option("--code/--no-code", default=True, help="Include the code (default) or not.")
@client_command
def get(session: Session, name: str, url: bool, code: bool) -> None:
    """Get action NAME."""
    qname = session.name(name)
    with session.client() as client:
        if url:
            package, _, action_name = qname.name.rpartition("/")
            session.out.ok(f"got action {name}")
            web = f"{client.config.apihost}/api/v1/web/{qname.namespace}/{package or 'default'}"
            session.out.text(f"{web}/{action_name}")
            if session.out.json_mode:
                session.out.json({"url": f"{web}/{action_name}"})
            return
        reply = client.call(
            "GET",
            f"actions/{qname.url_path}",
            f"Unable to get action '{name}'",
            namespace=qname.namespace,
            params={"code": "true" if code else "false"},
        )
    session.out.data(f"got action {name}", reply.body)


@action.command(name="list")
@click.argument("package", required=False)
@click.option("-s", "--skip", type=int, default=0, help="Exclude the first SKIP actions.")
@click.option("-l", "--limit", type=int, default=30, help="Return at most LIMIT actions.")
@click.option("-n", "--name-sort", is_flag=True, help="Sort by name.")
@client_command
def list_(session: Session, package: str | None, skip: int, limit: int, name_sort: bool) -> None:
    """List the actions (of PACKAGE, if given)."""
    path = "actions"
    namespace = None
    if package is not None:
        qpackage = session.name(package)
        path, namespace = f"actions/{qpackage.url_path}/", qpackage.namespace
    with session.client() as client:
        reply = client.call(
            "GET",
            path,
            "Unable to obtain the list of actions",
            namespace=namespace,
            params={"skip": skip, "limit": limit},
        )
    actions = reply.body if isinstance(reply.body, list) else []
    if name_sort:
        actions.sort(key=lambda a: str(a.get("name")))
    rows = [[entities.fqn(a), entities.visibility(a), _kind(a)] for a in actions]
    session.out.table("actions", rows, raw=actions)


@action.command()
@click.argument("name")
@client_command
def delete(session: Session, name: str) -> None:
    """Delete action NAME."""
    qname = session.name(name)
    with session.client() as client:
        reply = entities.delete(client, "actions", "action", qname)
    if session.out.json_mode:
        session.out.json(reply.body)
    session.out.ok(f"deleted action {name}")


def _kind(entity: dict[str, Any]) -> str:
    kind = entities.annotation(entity, "exec")
    if kind is None and isinstance(entity.get("exec"), dict):
        kind = entity["exec"].get("kind")
    return str(kind or "")
