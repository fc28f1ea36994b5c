"""A log-ingest receiver on loopback that speaks the three log-forwarding destinations'
documented protocols, checking each request's credentials as the real service does:

- Splunk HEC: ``POST /services/collector``, ``Authorization: Splunk <token>``, a body of
  concatenated JSON event objects; answers ``{"text": "Success", "code": 0}``, or 403
  ``{"text": "Invalid token", "code": 4}``.
- Azure Log Analytics (HTTP Data Collector API): ``POST /api/logs?api-version=2016-04-01``
  with ``Log-Type``, ``x-ms-date`` and ``Authorization: SharedKey <customer id>:<signature>``;
  the receiver computes the HMAC-SHA256 signature itself (from the shared key, the body's
  length and the date) and answers 403 when it differs; a JSON array of records.
- New Relic Log API: ``POST /log/v1`` with ``X-License-Key`` or ``Api-Key``; a JSON array
  of ``{"common", "logs"}`` blocks; answers 202.

Every accepted entry is kept as ``(destination, event)``; :meth:`Receiver.wait_for` polls
for one with a deadline. ``stop()`` closes the listening socket, as a dead destination.
The server is uvicorn running a Starlette app in the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SPLUNK_TOKEN = "11111111-2222-3333-4444-555555555555"
AZURE_CUSTOMER_ID = "0f5e0c1a-7a1e-4a6b-9d1e-3a2b1c0d9e8f"
AZURE_SHARED_KEY = base64.b64encode(b"azure-shared-key-of-the-test-receiver!").decode()
AZURE_LOG_TYPE = "SquallLogs"
NEW_RELIC_KEY = "eu01xxnewreliclicensekeyofthetestNRAL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def expected_azure_signature(length: int, date: str) -> str:
    """The Data Collector API's signature, as Microsoft documents it."""
    string_to_sign = f"POST\n{length}\napplication/json\nx-ms-date:{date}\n/api/logs"
    digest = hmac.new(
        base64.b64decode(AZURE_SHARED_KEY), string_to_sign.encode("utf-8"), hashlib.sha256
    ).digest()
    return f"SharedKey {AZURE_CUSTOMER_ID}:{base64.b64encode(digest).decode()}"


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self.rejected: list[str] = []
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the three protocols -------------------------------------------------------------

    async def splunk(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Splunk {SPLUNK_TOKEN}":
            self.rejected.append("splunk: token")
            return JSONResponse({"text": "Invalid token", "code": 4}, status_code=403)
        text = (await request.body()).decode()
        decoder, at = json.JSONDecoder(), 0
        while at < len(text):
            event, at = decoder.raw_decode(text, at)
            while at < len(text) and text[at].isspace():
                at += 1
            self.entries.append(("splunk_hec", event))
        return JSONResponse({"text": "Success", "code": 0})

    async def azure(self, request: Request) -> Response:
        body = await request.body()
        date = request.headers.get("x-ms-date", "")
        if (
            request.query_params.get("api-version") != "2016-04-01"
            or request.headers.get("log-type") != AZURE_LOG_TYPE
            or request.headers.get("content-type") != "application/json"
            or request.headers.get("authorization") != expected_azure_signature(len(body), date)
        ):
            self.rejected.append("azure: signature")
            return Response(status_code=403)
        for record in json.loads(body):
            self.entries.append(("azure_log_analytics", record))
        return Response(status_code=200)

    async def new_relic(self, request: Request) -> Response:
        key = request.headers.get("x-license-key") or request.headers.get("api-key")
        if key != NEW_RELIC_KEY:
            self.rejected.append("new relic: key")
            return JSONResponse({"error": "invalid key"}, status_code=403)
        for block in json.loads(await request.body()):
            common = block.get("common", {}).get("attributes", {})
            for entry in block["logs"]:
                merged = {**common, **entry.get("attributes", {}), "message": entry["message"]}
                merged["timestamp"] = entry["timestamp"]
                self.entries.append(("new_relic", merged))
        return JSONResponse({"requestId": "test"}, status_code=202)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = Starlette(
            routes=[
                Route("/services/collector", self.splunk, methods=["POST"]),
                Route("/api/logs", self.azure, methods=["POST"]),
                Route("/log/v1", self.new_relic, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + 10
        while not self._server.started:
            if self._task.done() or time.monotonic() > deadline:
                raise RuntimeError("the log receiver did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Close the listening socket: from now on, connections are refused."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = None

    async def wait_for(
        self, match: Callable[[str, dict[str, Any]], bool], deadline_s: float = 30.0
    ) -> list[tuple[str, dict[str, Any]]]:
        """The entries ``match`` accepts, once there is at least one (AssertionError after
        the deadline)."""
        end = time.monotonic() + deadline_s
        while True:
            found = [(d, e) for d, e in self.entries if match(d, e)]
            if found:
                return found
            if time.monotonic() > end:
                raise AssertionError(
                    f"no matching log entry after {deadline_s} s; got {self.entries[-5:]}, "
                    f"rejected {self.rejected[-5:]}"
                )
            await asyncio.sleep(0.02)


class ThreadedReceiver:
    """A :class:`Receiver` in a thread of its own (its own event loop), for synchronous
    tests that drive subprocesses (the ``aio`` CLI against a ``squall standalone``)."""

    def __init__(self) -> None:
        self.receiver = Receiver()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.receiver.port

    @property
    def url(self) -> str:
        return self.receiver.url

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self._loop).result(15)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self._loop).result(15)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)
        self._loop.close()

    def wait_for(
        self, match: Callable[[str, dict[str, Any]], bool], deadline_s: float = 30.0
    ) -> list[tuple[str, dict[str, Any]]]:
        future = asyncio.run_coroutine_threadsafe(
            self.receiver.wait_for(match, deadline_s), self._loop
        )
        return future.result(deadline_s + 5)


async def _serve_forever() -> None:
    receiver = Receiver()
    await receiver.start()
    print(receiver.port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    # A receiver in a process of its own (bench/log_forwarding.py): prints its port, then
    # accepts entries until killed.
    asyncio.run(_serve_forever())
