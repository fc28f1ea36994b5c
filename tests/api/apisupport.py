"""Helpers of the API tests: paths, code snippets, error assertions, polling."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx

BASE_URL = "http://testserver"
NS = "/api/v1/namespaces/_"
GUEST = "guest"

NOT_FOUND = "The requested resource does not exist."
FORBIDDEN = "The supplied authentication is not authorized to access this resource."
NOT_SUPPLIED = "The resource requires authentication, which was not supplied with the request."
EXISTS = "resource already exists"
ILLEGAL_NAME = "The name of the entity contains illegal characters."
BAD_TIMEOUT = "Timeout must be number of milliseconds up to 60000."

NODE_HELLO = (
    "function main(params) {\n"
    "  console.log('hello from node', params.name);\n"
    "  console.error('to stderr');\n"
    "  return {greeting: 'Hello ' + params.name, params: params};\n"
    "}\n"
)
NODE_REJECT = "function main() { return Promise.reject({error: 'x'}); }\n"
NODE_THROW = "function main() { throw new Error('boom'); }\n"
PY_HELLO = (
    "def main(args):\n"
    "    print('hello from python', args.get('name'))\n"
    "    return {'greeting': 'Hello ' + str(args.get('name')), 'params': args}\n"
)
PY_APP_ERROR = "def main(args):\n    return {'error': 'bad input'}\n"

T = TypeVar("T")


def node_action(code: str = NODE_HELLO, **extra: Any) -> dict[str, Any]:
    return {"exec": {"kind": "nodejs:default", "code": code}, **extra}


def python_action(code: str = PY_HELLO, **extra: Any) -> dict[str, Any]:
    return {"exec": {"kind": "python:default", "code": code}, **extra}


def annotation(entity: dict[str, Any], key: str, default: Any = None) -> Any:
    for kv in entity.get("annotations", []):
        if kv["key"] == key:
            return kv["value"]
    return default


def annotation_keys(entity: dict[str, Any]) -> set[str]:
    return {kv["key"] for kv in entity.get("annotations", [])}


def assert_error(response: httpx.Response, status: int, message: str | None = None) -> str:
    """OpenWhisk's error answer: ``status``, body ``{"error", "code"}`` with ``code`` the
    response's X-Request-ID; ``message`` (if given) must be the whole error text.
    Returns the error text."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "code"}, body
    assert body["code"] == response.headers["x-request-id"]
    if message is not None:
        assert body["error"] == message
    error: str = body["error"]
    return error


async def poll(
    probe: Callable[[], Awaitable[T | None]], deadline_s: float = 10.0, what: str = ""
) -> T:
    """Await ``probe`` until it returns something other than None; fail after the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up after {deadline_s} s waiting for {what or probe}")
        await anyio.sleep(0.01)


async def clock_past(epoch_ms: int) -> bool | None:
    """A :func:`poll` probe: True once the wall clock is past ``epoch_ms``."""
    return True if time.time_ns() // 1_000_000 > epoch_ms else None


async def get_activation(client: httpx.AsyncClient, activation_id: str) -> dict[str, Any]:
    """The final record of ``activation_id``, polling while it is pending.

    An accepted id is never unknown (a pending record exists from the start), so a 404
    fails at once."""

    async def probe() -> dict[str, Any] | None:
        r = await client.get(f"{NS}/activations/{activation_id}")
        assert r.status_code == 200, r.text
        record: dict[str, Any] = r.json()
        return None if record["response"]["status"] == "pending" else record

    return await poll(probe, what=f"activation {activation_id}")
