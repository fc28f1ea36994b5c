"""``/dashboard``: sign-in, sign-out, the page, and the JSON it polls.

Routes (all under ``/dashboard``, so the session cookie's ``Path`` covers them only):

- ``GET /dashboard``: the dashboard for a valid session, else the sign-in form.
- ``POST /dashboard/login``: form field ``auth`` = ``uuid:key``; a good key sets the
  session cookie and redirects (303) to the dashboard; a wrong one answers 401 with the
  form and OpenWhisk's "The supplied authentication is invalid." The key never appears
  in a URL: the form posts it in the body, and the redirect carries nothing.
- ``POST /dashboard/logout``: clears the cookie, redirects to the sign-in form.
- ``GET /dashboard/api/summary?minutes=``, ``/dashboard/api/activations?…``,
  ``/dashboard/api/activations/{id}``: the session's namespace's figures; 401 without a
  valid session.
- ``GET /dashboard/api/platform``: the operator's view (invokers, containers, memory,
  queues, throttles), for the system namespace's session only (else 403).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from squall.controller.auth import INVALID, NOT_SUPPLIED
from squall.controller.core import controller_of
from squall.controller.http import JSONResponse
from squall.controller.ui import data, operator
from squall.controller.ui.assets import CSP, MISSING_VENDOR, vendored
from squall.controller.ui.pages import dashboard, sign_in
from squall.controller.ui.session import COOKIE, SESSION_S, Session, Sessions
from squall.entities.activation import now_ms
from squall.errors import BadRequest, Forbidden, Unauthorized
from squall.metrics.exposition import MetricFamilies

PATH = "/dashboard"
# A sign-in form is small; anything bigger is not one.
MAX_FORM = 4096
_HTML_HEADERS = {"content-security-policy": CSP, "cache-control": "no-store"}


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_HTML_HEADERS)


def _secure(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "")
    return request.url.scheme == "https" or forwarded.split(",")[0].strip() == "https"


class Dashboard:
    """The dashboard's routes over one :class:`Sessions` (one signing secret) and the
    metric families the operator's view shows."""

    def __init__(self, sessions: Sessions, metrics: Sequence[MetricFamilies]) -> None:
        self.sessions = sessions
        self.metrics = metrics

    async def _session(self, request: Request) -> Session | None:
        auth = controller_of(request).auth_store
        return await self.sessions.current(auth, request.cookies.get(COOKIE))

    async def _require(self, request: Request) -> Session:
        session = await self._session(request)
        if session is None:
            raise Unauthorized(NOT_SUPPLIED)
        return session

    async def page(self, request: Request) -> Response:
        if not vendored("uPlot.iife.min.js", "uPlot.min.css"):
            return HTMLResponse(f"<!doctype html><p>{MISSING_VENDOR}</p>", status_code=503)
        session = await self._session(request)
        if session is None:
            return _html(sign_in())
        operating = session.namespace == operator.OPERATOR_NAMESPACE
        return _html(dashboard(session.namespace, operator=operating))

    async def login(self, request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:  # stop reading: no sign-in form is that big
                return _html(sign_in(INVALID), 401)
        fields = parse_qs(body.decode("utf-8", "replace"))
        auth = (fields.get("auth") or [""])[0].strip()
        # Split as Basic authentication does: at the first colon.
        uuid, sep, key = auth.partition(":")
        ctl = controller_of(request)
        subject = await ctl.auth_store.authenticate(uuid, key) if uuid and sep and key else None
        if subject is None:
            return _html(sign_in(INVALID), 401)
        cookie, _ = self.sessions.issue(subject.namespace, subject.uuid)
        # Only the namespace's own key signs in (not the key its actions are given).
        if await self.sessions.current(ctl.auth_store, cookie) is None:
            return _html(sign_in(INVALID), 401)
        response = RedirectResponse(PATH, status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=SESSION_S,
            path=PATH,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
        )
        response.headers["cache-control"] = "no-store"
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse(PATH, status_code=303)
        response.delete_cookie(
            COOKIE, path=PATH, httponly=True, samesite="strict", secure=_secure(request)
        )
        return response

    async def summary(self, request: Request) -> Response:
        session = await self._require(request)
        minutes = _int(request, "minutes") or 60
        if minutes not in data.WINDOWS:
            raise BadRequest(f"minutes must be one of {', '.join(map(str, data.WINDOWS))}")
        ctl = controller_of(request)
        figures = await data.summary(
            ctl.activations, session.namespace, now_ms(), minutes, ctl.throttles.refusals
        )
        return JSONResponse(figures)

    async def activations(self, request: Request) -> Response:
        session = await self._require(request)
        status = request.query_params.get("status") or None
        if status is not None and status not in data.STATUSES:
            raise BadRequest(f"status must be one of: {', '.join(data.STATUSES)}")
        listing = await data.activations(
            controller_of(request).activations,
            session.namespace,
            name=request.query_params.get("name") or None,
            status=status,
            since=_int(request, "since"),
            upto=_int(request, "upto"),
        )
        return JSONResponse(listing)

    async def activation(self, request: Request) -> Response:
        session = await self._require(request)
        store = controller_of(request).activations
        found = await data.detail(store, session.namespace, request.path_params["id"])
        return JSONResponse(found)

    async def platform(self, request: Request) -> Response:
        session = await self._require(request)
        if session.namespace != operator.OPERATOR_NAMESPACE:
            raise Forbidden()
        figures = await operator.platform(self.metrics)
        return JSONResponse({"invokers": controller_of(request).invokers(), **figures})

    def routes(self) -> list[BaseRoute]:
        return [
            Route(PATH, self.page, methods=["GET"]),
            Route(PATH + "/login", self.login, methods=["POST"]),
            Route(PATH + "/logout", self.logout, methods=["POST"]),
            Route(PATH + "/api/summary", self.summary, methods=["GET"]),
            Route(PATH + "/api/activations", self.activations, methods=["GET"]),
            Route(PATH + "/api/activations/{id}", self.activation, methods=["GET"]),
            Route(PATH + "/api/platform", self.platform, methods=["GET"]),
        ]


def _int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
