"""Serving an ASGI app until SIGINT/SIGTERM, for ``squall standalone``, ``squall
controller`` and ``squall invoker``.

uvicorn's own signal handling re-raises a captured SIGTERM after serving, which would
kill the process before the invoker records in-flight activations and kills the
runtimes; here a signal only asks the server to stop (a second one forces it), and the
caller's ``close`` then runs while the signals are still routed to the server, so a
second Ctrl-C cannot interrupt an orderly shutdown half-way.

The protocol is uvicorn's httptools protocol writing through a coalescing transport
(coalescing.py); for an application built by ``create_app`` it also serves the invoke
and web action routes itself, without ASGI (``controller/hotroute.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable, Generator

import uvicorn
from starlette.types import ASGIApp

from squall.cli.coalescing import CoalescingHttpToolsProtocol
from squall.config import Settings
from squall.controller.hotroute import HotRoute, HotRouteProtocol, hot_route_of

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    """uvicorn's server with signals left to :func:`serve_app`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def request_exit(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


def protocol_for(app: ASGIApp) -> type[asyncio.Protocol]:
    """The HTTP protocol that serves ``app``: with its hot route when it has one."""
    route = hot_route_of(app)
    if route is None:
        return CoalescingHttpToolsProtocol
    return _hot_protocol(route)


def _hot_protocol(route: HotRoute) -> type[asyncio.Protocol]:
    class ServedProtocol(HotRouteProtocol, CoalescingHttpToolsProtocol):
        hot_route = route

    return ServedProtocol


async def serve_app(
    app: ASGIApp,
    settings: Settings,
    port: int,
    close: Callable[[], Awaitable[None]] | None = None,
    *,
    tls: bool = False,
) -> None:
    """Serve ``app`` on ``settings.host:port`` until SIGINT/SIGTERM, then await ``close``.

    ``tls`` serves https with ``settings.tls_cert`` and ``tls_key`` when they are set
    (standalone; a cluster's controllers sit behind nginx, which terminates TLS).

    ``close`` runs also when serving fails. Raises SystemExit when the port could not be
    listened on.
    """
    cert, key = (settings.tls_cert, settings.tls_key) if tls else ("", "")
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        loop="uvloop",
        # httptools, with an answer's head and body sent in one write (coalescing.py),
        # and the invoke and web routes served by the protocol itself (hotroute.py).
        http=protocol_for(app),
        lifespan="off",
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
        ssl_certfile=cert or None,
        ssl_keyfile=key or None,
    )
    # Everything built so far lives as long as the process: move it out of the
    # collector's sight so collections during requests scan only per-request garbage.
    gc.collect()
    gc.freeze()
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, server.request_exit)
    try:
        await server.serve()
    finally:
        try:
            if close is not None:
                await close()
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)
    if not server.started:
        raise SystemExit(f"could not listen on {settings.host}:{port}")
