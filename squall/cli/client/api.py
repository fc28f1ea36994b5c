"""``squall api create|list|get|delete``, in the shape of ``wsk api``.

The commands talk to the gateway's management API
(``/api/v1/web/whisk.system/apimgmt/{createApi,getApi,deleteApi}``) with the bodies
``wsk`` and the ``openwhisk`` npm client send; the server keeps the routes and serves them
at the URLs ``create`` prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from squall.cli.client.common import Session, client_command
from squall.cli.client.errors import ClientError
from squall.cli.client.http import WhiskClient

MGMT = "/api/v1/web/whisk.system/apimgmt"
VERBS = ("get", "post", "put", "delete", "patch", "head", "options")
RESPONSE_TYPES = ("json", "http", "html", "text", "svg")


@click.group()
def api() -> None:
    """Work with APIs of the API gateway."""


def _annotation(entity: dict[str, Any], key: str) -> Any:
    for kv in entity.get("annotations") or []:
        if isinstance(kv, dict) and kv.get("key") == key:
            return kv.get("value")
    return None


def _endpoint(
    session: Session, client: WhiskClient, base: str, path: str, verb: str, action: str
) -> dict[str, Any]:
    """The ``apidoc`` of one endpoint; the action must be a web action (as ``wsk`` checks),
    and its ``require-whisk-auth`` secret goes along for the gateway to send."""
    qname = session.name(action)
    reply = client.call(
        "GET",
        f"actions/{qname.url_path}",
        f"Unable to get action '{action}'",
        namespace=qname.namespace,
        params={"code": "false"},
    )
    entity = reply.body if isinstance(reply.body, dict) else {}
    if _annotation(entity, "web-export") is not True:
        raise ClientError(
            f"Action '{qname}' is not a web action. Issue 'squall action update \"{action}\""
            " --web true' to convert the action to a web action."
        )
    package, _, name = qname.name.rpartition("/")
    action_doc: dict[str, Any] = {
        "name": qname.name,
        "namespace": qname.namespace,
        "backendMethod": verb.upper(),
        "backendUrl": f"{session.config.apihost}/api/v1/web/{qname.namespace}/"
        f"{package or 'default'}/{name}.http",
        "authkey": session.config.auth,
    }
    secret = _annotation(entity, "require-whisk-auth")
    if isinstance(secret, str | int) and not isinstance(secret, bool):
        action_doc["secureKey"] = str(secret)
    apidoc: dict[str, Any] = {
        "namespace": qname.namespace,
        "gatewayBasePath": base,
        "gatewayPath": path,
        "gatewayMethod": verb.upper(),
        "id": f"API:{qname.namespace}:{base}",
        "action": action_doc,
    }
    params = [p[1:-1] for p in path.split("/") if p.startswith("{") and p.endswith("}")]
    if params:
        apidoc["pathParameters"] = [
            {
                "name": p,
                "in": "path",
                "description": f"Default description for '{p}'",
                "required": True,
                "type": "string",
            }
            for p in params
        ]
    return apidoc


@api.command()
@click.argument("base_path", required=False)
@click.argument("api_path", required=False)
@click.argument("api_verb", required=False, type=click.Choice(VERBS, case_sensitive=False))
@click.argument("action", required=False)
@click.option("-n", "--apiname", default=None, help="Friendly name of the API.")
@click.option(
    "-r",
    "--response-type",
    default="json",
    show_default=True,
    type=click.Choice(RESPONSE_TYPES),
    help="The web action response TYPE.",
)
@click.option(
    "-c",
    "--config-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A swagger document to create the whole API from.",
)
@client_command
def create(
    session: Session,
    base_path: str | None,
    api_path: str | None,
    api_verb: str | None,
    action: str | None,
    apiname: str | None,
    response_type: str,
    config_file: Path | None,
) -> None:
    """Create a route: API_VERB on BASE_PATH/API_PATH runs web action ACTION
    (or every route of a swagger document, with --config-file)."""
    params: dict[str, str] = {}
    with session.client() as client:
        if config_file is not None:
            swagger = config_file.read_text()
            body: dict[str, Any] = {"apidoc": {"namespace": "_", "swagger": swagger}}
        else:
            if not (base_path and api_path and api_verb and action):
                raise ClientError(
                    "Invalid argument(s). Specify BASE_PATH API_PATH API_VERB ACTION, or"
                    " --config-file"
                )
            apidoc = _endpoint(session, client, base_path, api_path, api_verb, action)
            if apiname:
                apidoc["apiName"] = apiname
            body = {"apidoc": apidoc}
            params["responsetype"] = response_type
        reply = client.call(
            "POST", f"{MGMT}/createApi", "Unable to create API", params=params, json=body
        )
    result = reply.body if isinstance(reply.body, dict) else {}
    if session.out.json_mode:
        session.out.json(result)
        return
    url = str(result.get("gwApiUrl", ""))
    if config_file is not None:
        for path, verbs in (result.get("apidoc") or {}).get("paths", {}).items():
            for verb, op in verbs.items():
                target = (op or {}).get("x-openwhisk") or {}
                session.out.ok(f"created API {path} {verb} for action {target.get('action')}")
                session.out.text(f"{url}{path}")
        return
    assert api_path is not None and api_verb is not None and action is not None
    session.out.ok(
        f"created API {base_path}{api_path} {api_verb.upper()} for action {session.name(action)}"
    )
    session.out.text(f"{url}{api_path}")


def _get_apis(
    session: Session, base: str | None, extra: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    params = {"basepath": base} if base else {}
    with session.client() as client:
        reply = client.call(
            "GET",
            f"{MGMT}/getApi",
            "Unable to obtain the API list",
            params={**params, **(extra or {})},
        )
    body = reply.body if isinstance(reply.body, dict) else {}
    apis = body.get("apis")
    return [a for a in apis if isinstance(a, dict)] if isinstance(apis, list) else []


def _rows(apis: list[dict[str, Any]], path: str | None, verb: str | None) -> list[list[str]]:
    rows = []
    for api in apis:
        value = api.get("value") or {}
        doc = value.get("apidoc") or {}
        title = str((doc.get("info") or {}).get("title", ""))
        for rel, verbs in (doc.get("paths") or {}).items():
            if path and rel != path:
                continue
            for op_verb, op in (verbs or {}).items():
                if verb and op_verb != verb.lower():
                    continue
                target = (op or {}).get("x-openwhisk") or {}
                name = "/".join(p for p in (target.get("package"), target.get("action")) if p)
                action = f"/{target.get('namespace', '')}/{name}"
                rows.append([action, op_verb, title, f"{value.get('gwApiUrl', '')}{rel}"])
    return rows


@api.command(name="list")
@click.argument("base_path", required=False)
@click.argument("api_path", required=False)
@click.argument("api_verb", required=False, type=click.Choice(VERBS, case_sensitive=False))
@click.option("-l", "--limit", type=int, default=None, help="At most LIMIT APIs.")
@click.option("-s", "--skip", type=int, default=None, help="Skip the first SKIP APIs.")
@client_command
def list_(
    session: Session,
    base_path: str | None,
    api_path: str | None,
    api_verb: str | None,
    limit: int | None,
    skip: int | None,
) -> None:
    """List the routes of every API, or of BASE_PATH (or API name) [API_PATH [API_VERB]]."""
    window = {k: str(v) for k, v in (("limit", limit), ("skip", skip)) if v is not None}
    apis = _get_apis(session, base_path, window)
    rows = _rows(apis, api_path, api_verb)
    session.out.table("ok: APIs", rows, headers=["Action", "Verb", "API Name", "URL"], raw=apis)


@api.command()
@click.argument("base_path_or_name")
@client_command
def get(session: Session, base_path_or_name: str) -> None:
    """Print the swagger document of the API of BASE_PATH_OR_NAME."""
    apis = _get_apis(session, base_path_or_name)
    if not apis:
        raise ClientError(
            f"Unable to get API '{base_path_or_name}': API '{base_path_or_name}' does not exist."
        )
    session.out.json((apis[0].get("value") or {}).get("apidoc"))


@api.command()
@click.argument("base_path_or_name")
@click.argument("api_path", required=False)
@click.argument("api_verb", required=False, type=click.Choice(VERBS, case_sensitive=False))
@client_command
def delete(
    session: Session, base_path_or_name: str, api_path: str | None, api_verb: str | None
) -> None:
    """Delete the API of BASE_PATH_OR_NAME, or its API_PATH, or only API_VERB of it."""
    params = {"basepath": base_path_or_name, "force": "true"}
    if api_path:
        params["relpath"] = api_path
    if api_verb:
        params["operation"] = api_verb.lower()
    with session.client() as client:
        client.call("DELETE", f"{MGMT}/deleteApi", "Unable to delete API", params=params)
    if session.out.json_mode:
        session.out.json({})
    elif api_verb:
        session.out.ok(f"deleted {api_path} {api_verb.upper()} from {base_path_or_name}")
    elif api_path:
        session.out.ok(f"deleted {api_path} from {base_path_or_name}")
    else:
        session.out.ok(f"deleted API {base_path_or_name}")
