"""The API gateway's management: what OpenWhisk's ``whisk.system/apimgmt`` web actions
``createApi``, ``getApi`` and ``deleteApi`` do, over the store's :class:`ApiStore`.

Each operation gets the web action's arguments (query and body merged, as a web action
receives them) and the caller's namespace (``__ow_user``), and answers what the OpenWhisk
action answers in its HTTP body; a refusal raises :class:`ApiDocError` with OpenWhisk's
message, which the route answers with status 502 as OpenWhisk does.

Concurrency: an API is a read-modify-write of one stored document (several endpoints
are added one by one, from any controller). Each write names the revision it read, so
of two controllers changing one API at once one gets ``Conflict`` and starts over from
the new revision; nothing is lost and nothing is locked.
"""

from __future__ import annotations

from typing import Any

from squall.entities import apidoc
from squall.entities.apidoc import ApiDocError
from squall.errors import Conflict, NotFound
from squall.store.contracts import ApiStore, GatewayApi

# Attempts of one read-modify-write before giving up (each lost one means another write
# to the same API succeeded in between, so this bounds only pathological contention).
ATTEMPTS = 20

CREATE_FAILURE = "API creation failure: "
DELETE_FAILURE = "API deletion failure: "


class ApiManagement:
    """The three operations for one store; ``api_host`` is how clients reach the
    gateway (the base of every ``gwApiUrl``)."""

    def __init__(self, apis: ApiStore) -> None:
        self.apis = apis

    def _value(self, api: GatewayApi, api_host: str) -> dict[str, Any]:
        url = apidoc.gateway_url(api_host, api.tenant, api.base_path)
        return apidoc.cli_api(api.namespace, api.tenant, url, api.swagger)

    async def create(
        self, namespace: str, tenant: str, args: dict[str, Any], api_host: str
    ) -> dict[str, Any]:
        """``createApi``: add the endpoint to its API (or replace the API by a swagger
        document); answers the API as ``{namespace, gwApiActivated, tenantId, gwApiUrl,
        apidoc}``."""
        doc = apidoc.parse_apidoc(args)
        apidoc.update_namespace(doc, namespace)
        base = apidoc.base_path(doc)
        response_type = args.get("responsetype")
        for _ in range(ATTEMPTS):
            current: GatewayApi | None
            try:
                current = await self.apis.get(namespace, base)
            except NotFound:
                current = None
            try:
                if isinstance(doc.get("swagger"), dict):
                    swagger = doc["swagger"]
                else:
                    start = (
                        current.swagger
                        if current is not None
                        else apidoc.base_swagger(base, doc.get("apiName"))
                    )
                    swagger = apidoc.add_endpoint(start, doc, response_type)
                apidoc.validate_final(swagger)
            except ApiDocError as e:
                raise ApiDocError(CREATE_FAILURE + e.message) from None
            rev = None if current is None else current.rev
            try:
                stored = await self.apis.put(namespace, base, tenant, swagger, rev)
            except Conflict:
                continue
            return self._value(stored, api_host)
        raise Conflict("Concurrent modification to resource detected.")

    async def find(self, namespace: str, base_or_name: str | None) -> list[GatewayApi]:
        """The namespace's APIs; with ``base_or_name``, the one of that base path (it
        starts with ``/``) or those of that name (``info.title``)."""
        if not base_or_name:
            return await self.apis.list(namespace)
        if base_or_name.startswith("/"):
            try:
                return [await self.apis.get(namespace, base_or_name)]
            except NotFound:
                return []
        return [
            api
            for api in await self.apis.list(namespace)
            if (api.swagger.get("info") or {}).get("title") == base_or_name
        ]

    async def get(self, namespace: str, args: dict[str, Any], api_host: str) -> dict[str, Any]:
        """``getApi``: ``{"apis": [{id, key, value}]}``, ``skip`` and ``limit`` applied."""
        found = await self.find(namespace, _text(args.get("basepath")))
        skip = _count(args.get("skip")) or 0
        limit = _count(args.get("limit"))
        window = found[skip:] if limit is None or limit == 0 else found[skip : skip + limit]
        return {
            "apis": [
                {
                    "id": f"API:{api.namespace}:{api.base_path}",
                    "key": f"API:{api.namespace}:{api.base_path}",
                    "value": self._value(api, api_host),
                }
                for api in window
            ]
        }

    async def delete(self, namespace: str, args: dict[str, Any]) -> dict[str, Any]:
        """``deleteApi``: the whole API of ``basepath`` (or name), or one path of it, or
        one verb of that path; an API left without paths is deleted. Answers ``{}``."""
        base_or_name = _text(args.get("basepath"))
        relpath = _text(args.get("relpath"))
        operation = _text(args.get("operation"))
        if not base_or_name:
            raise ApiDocError("basepath is required.")
        if not relpath and operation:
            raise ApiDocError("When specifying an operation, the path is required.")
        for _ in range(ATTEMPTS):
            found = await self.find(namespace, base_or_name)
            if not found:
                raise ApiDocError(f"{DELETE_FAILURE}API '{base_or_name}' does not exist.")
            api = found[0]
            try:
                if not relpath:
                    await self.apis.delete(namespace, api.base_path, api.rev)
                    return {}
                try:
                    swagger = apidoc.remove_endpoint(api.swagger, relpath, operation)
                except ApiDocError as e:
                    raise ApiDocError(DELETE_FAILURE + e.message) from None
                if not swagger.get("paths"):
                    await self.apis.delete(namespace, api.base_path, api.rev)
                else:
                    await self.apis.put(namespace, api.base_path, api.tenant, swagger, api.rev)
                return {}
            except (Conflict, NotFound):
                continue  # changed or deleted in between: look again
        raise Conflict("Concurrent modification to resource detected.")


# What a JavaScript client sends for an option it left undefined: the npm client puts
# every option it was given into the query string, ``undefined`` ones as the text
# "undefined" (``aio rt:api:list`` without a base path sends ``basepath=undefined``).
_UNSET = frozenset({"", "undefined", "null"})


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value in _UNSET):
        return None
    return str(value)


def _count(value: Any) -> int | None:
    """A ``skip``/``limit`` from the query (text) or the body (number); junk is ignored,
    as OpenWhisk's action passes it on to a gateway that ignores it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(value, 0)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
