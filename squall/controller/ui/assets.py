"""The files the browser pages load, all served by Squall itself (no CDN: the pages work
with no internet).

Two sources:

- ``static/``: Squall's own pages, scripts and styles, in the package.
- ``vendor/``: the maintained libraries, copied by ``./dev`` from ``ui/node_modules``
  after ``npm ci`` against ``ui/package-lock.json`` (swagger-ui-dist for the API
  reference, uPlot for the plots). The directory is not in git; when it is missing the
  pages say how to build it instead of half-working.

Only the files named in :data:`FILES` are served, so no request path reaches the disk.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from squall.errors import NotFound

HERE = Path(__file__).parent
STATIC = HERE / "static"
VENDOR = HERE / "vendor"
PREFIX = "/dashboard/assets/"

# URL name → file. The vendor names are those ./dev copies.
FILES: dict[str, Path] = {
    "dashboard.css": STATIC / "dashboard.css",
    "dashboard.js": STATIC / "dashboard.js",
    "plots.js": STATIC / "plots.js",
    "docs.js": STATIC / "docs.js",
    "swagger-ui.css": VENDOR / "swagger-ui" / "swagger-ui.css",
    "swagger-ui-bundle.js": VENDOR / "swagger-ui" / "swagger-ui-bundle.js",
    "uPlot.min.css": VENDOR / "uplot" / "uPlot.min.css",
    "uPlot.iife.min.js": VENDOR / "uplot" / "uPlot.iife.min.js",
}

MISSING_VENDOR = (
    "The browser libraries of Squall's pages are not installed: run ./dev standalone "
    "(or: cd ui && npm ci, then ./dev copies them into squall/controller/ui/vendor)."
)

# Pages and assets load only from this server; the libraries draw with inline styles.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
)


def vendored(*names: str) -> bool:
    """Whether the named library files are installed."""
    return all(FILES[n].is_file() for n in names)


def url(name: str) -> str:
    if name not in FILES:
        raise KeyError(name)
    return PREFIX + name


async def asset(request: Request) -> Response:
    path = FILES.get(request.path_params["name"])
    if path is None or not path.is_file():
        raise NotFound()
    media = "text/javascript" if path.suffix == ".js" else None
    return FileResponse(path, media_type=media, headers={"cache-control": "no-cache"})


ROUTES = [Route(PREFIX + "{name}", asset, methods=["GET", "HEAD"])]
