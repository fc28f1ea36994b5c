"""What every entity collection's routes share: listing/counting and create-or-update."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from squall.controller.catalog import COLLECTION_OF, Catalog, E
from squall.controller.core import Controller
from squall.controller.http import JSONResponse, list_window, query_bool
from squall.entities.names import EntityPath
from squall.errors import Conflict, NotFound


async def list_collection(
    ctl: Controller, request: Request, cls: type[E], namespace: str, package: str | None = None
) -> Response:
    """``count=true`` → ``{"<collection>": N}``; otherwise a page of summaries."""
    collection = COLLECTION_OF[cls]
    if query_bool(request, "count"):
        return JSONResponse({collection: await ctl.catalog.count(cls, namespace, package=package)})
    skip, limit = list_window(request, collection)
    entities = await ctl.catalog.list(cls, namespace, package=package, skip=skip, limit=limit)
    return JSONResponse([e.summary_json() for e in entities])


async def find(catalog: Catalog, cls: type[E], path: EntityPath) -> E | None:
    try:
        return await catalog.get(cls, path)
    except NotFound:
        return None


def require_overwrite(request: Request) -> None:
    """A PUT onto an existing entity needs ``overwrite=true`` (OpenWhisk answers 409)."""
    if not query_bool(request, "overwrite"):
        raise Conflict("resource already exists")
