"""``/api/v1/docs``: the API reference, rendered in the browser by Swagger UI from the
description Squall serves at ``/api/v1/api-docs`` (what ``/api/v1`` advertises as
``swagger_paths.ui``). "Try it out" sends real requests to this server, signed with the
``uuid:key`` given to the page's "Authorize" button (kept in the page's memory only)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from squall.controller.ui.assets import CSP, MISSING_VENDOR, url, vendored

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Squall API reference</title>
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{url("swagger-ui.css")}">
</head>
<body>
<div id="swagger-ui" data-spec="/api/v1/api-docs"></div>
<script src="{url("swagger-ui-bundle.js")}"></script>
<script src="{url("docs.js")}"></script>
</body>
</html>
"""


async def docs(request: Request) -> Response:
    if not vendored("swagger-ui.css", "swagger-ui-bundle.js"):
        return HTMLResponse(f"<!doctype html><p>{MISSING_VENDOR}</p>", status_code=503)
    return HTMLResponse(PAGE, headers={"content-security-policy": CSP})


ROUTES = [Route("/api/v1/docs", docs, methods=["GET"])]
