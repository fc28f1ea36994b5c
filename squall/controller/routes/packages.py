"""``/namespaces/{ns}/packages``: CRUD, bindings, and listing a package's contents."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from squall.controller.catalog import Catalog
from squall.controller.core import Controller, reader
from squall.controller.entitlement import readable_package
from squall.controller.http import JSONResponse, list_window, query_bool, read_entity
from squall.controller.routes.common import find, list_collection, require_overwrite
from squall.entities import params
from squall.entities.action import Action
from squall.entities.names import EntityPath, check_name
from squall.entities.package import RESERVED_NAMES, Binding, Package
from squall.errors import BadRequest, Conflict, Forbidden, NotFound

MAX_PACKAGE_BYTES = 2 * 1024 * 1024 + 64 * 1024  # parameters + annotations (1 MB each)

BINDING_MISSING = "Binding references a package that does not exist."
BINDING_OF_BINDING = "Cannot bind to another package binding."
PACKAGE_TO_BINDING = "Resource is a package and cannot be converted into a binding."


def _entry(action: Action) -> dict[str, Any]:
    return {"name": action.path.name, "version": action.version, "annotations": action.annotations}


async def _shown(ctl: Controller, viewer: str, package: Package) -> dict[str, Any]:
    """GET's view of a package: the entity with its ``actions`` and ``feeds``.

    For a binding, as OpenWhisk's ``mergePackageWithBinding``: the bound package's
    actions and feeds, and its parameters under the binding's own (the binding's win).
    A binding whose package is gone is 404 "The requested resource does not exist."
    (OpenWhisk's read of the bound package fails), not a binding with no actions.
    Parameters of a namespace other than ``viewer``'s are shown encrypted.
    """
    shown = package.to_json()
    shown["parameters"] = ctl.parameters_for(package.path.namespace, viewer, package.parameters)
    source = package
    if package.binding is not None:
        bound = EntityPath(package.binding.namespace, "", package.binding.name)
        source = await ctl.catalog.get(Package, bound)
        inherited = ctl.parameters_for(source.path.namespace, viewer, source.parameters)
        shown["parameters"] = params.merge(inherited, shown["parameters"])
    actions = await ctl.catalog.list(Action, source.path.namespace, package=source.path.name)
    feeds = [a for a in actions if params.get(a.annotations, "feed") is not None]
    plain = [a for a in actions if params.get(a.annotations, "feed") is None]
    return {**shown, "actions": [_entry(a) for a in plain], "feeds": [_entry(a) for a in feeds]}


async def _check_binding(catalog: Catalog, caller_ns: str, binding: Binding) -> None:
    """A binding may point at an own package or another namespace's published one."""
    try:
        target = await catalog.get(Package, EntityPath(binding.namespace, "", binding.name))
    except NotFound:
        if binding.namespace != caller_ns:
            raise Forbidden() from None
        raise BadRequest(BINDING_MISSING) from None
    if binding.namespace != caller_ns and not target.publish:
        raise Forbidden()
    if target.binding is not None:
        raise Conflict(BINDING_OF_BINDING)


async def list_packages(request: Request) -> Response:
    ctl, identity, namespace = await reader(request)
    if namespace == identity.namespace:
        return await list_collection(ctl, request, Package, namespace)
    # Another namespace: only its published packages are visible.
    skip, limit = list_window(request, "packages")
    public = [p for p in await ctl.catalog.list(Package, namespace) if p.publish]
    if query_bool(request, "count"):
        return JSONResponse({"packages": len(public)})
    return JSONResponse([p.summary_json() for p in public[skip : skip + limit]])


async def package_entity(request: Request) -> Response:
    ctl, identity, namespace = await reader(request)
    if namespace != identity.namespace and request.method != "GET":
        raise Forbidden()
    path = EntityPath(namespace, "", check_name(request.path_params["name"]))
    if request.method == "GET":
        package = await readable_package(ctl, identity.namespace, path)
        return JSONResponse(await _shown(ctl, identity.namespace, package))
    if request.method == "DELETE":
        package = await ctl.catalog.get(Package, path)
        inside = await ctl.catalog.list(Action, namespace, package=path.name)
        if inside and not query_bool(request, "force"):
            raise Conflict(
                f"Package not empty (contains {len(inside)} entities). Set force param or "
                "delete package contents."
            )
        for action in inside:
            await ctl.catalog.delete(action)
        await ctl.catalog.delete(package)
        return JSONResponse(package.to_json())
    # PUT
    if path.name in RESERVED_NAMES:
        raise BadRequest(f"Package name '{path.name}' is reserved.")
    body = await read_entity(request, MAX_PACKAGE_BYTES)
    existing = await find(ctl.catalog, Package, path)
    if existing is None:
        package = Package.create(path, body)
        if package.binding is not None:
            await _check_binding(ctl.catalog, namespace, package.binding)
        stored = await ctl.catalog.put(package, create=True)
    else:
        require_overwrite(request)
        package = existing.update(body)
        if existing.binding is None and package.binding is not None:
            raise BadRequest(PACKAGE_TO_BINDING)
        if package.binding is not None and package.binding != existing.binding:
            await _check_binding(ctl.catalog, namespace, package.binding)
        stored = await ctl.catalog.put(package, create=False)
    return JSONResponse(stored.to_json())


ROUTES = [
    Route("/api/v1/namespaces/{namespace}/packages", list_packages, methods=["GET"]),
    Route(
        "/api/v1/namespaces/{namespace}/packages/{name}",
        package_entity,
        methods=["GET", "PUT", "DELETE"],
    ),
]
