"""The meta endpoints, the headers on every answer, CORS, and authentication."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from apisupport import (
    BASE_URL,
    FORBIDDEN,
    GUEST,
    NOT_FOUND,
    NOT_SUPPLIED,
    NS,
    assert_error,
    node_action,
)

from squall.cli.standalone import Standalone

pytestmark = pytest.mark.anyio


async def test_root_describes_the_platform(anonymous: httpx.AsyncClient) -> None:
    # Given a running platform / When GET / without credentials
    r = await anonymous.get("/")
    # Then it describes the API paths, the system limits and the runtimes
    assert r.status_code == 200
    body = r.json()
    assert "description" in body
    assert body["api_paths"] == ["/api/v1"]
    assert body["limits"]["max_action_duration"] == 300_000
    assert body["limits"]["min_action_duration"] == 100
    kinds = {k["kind"] for family in body["runtimes"].values() for k in family}
    assert {"nodejs:20", "python:3.13"} <= kinds
    defaults = {k["kind"] for family in body["runtimes"].values() for k in family if k["default"]}
    assert defaults == {"nodejs:20", "python:3.13", "native"}


async def test_api_v1_has_description_and_version(anonymous: httpx.AsyncClient) -> None:
    # When GET /api/v1
    r = await anonymous.get("/api/v1")
    # Then description and api_version are present
    assert r.status_code == 200
    body = r.json()
    assert body["description"]
    assert body["api_version"] == "1.0.0"
    assert body["api_version_path"] == "v1"


async def test_api_docs_is_the_swagger_description(anonymous: httpx.AsyncClient) -> None:
    # When GET /api/v1/api-docs
    r = await anonymous.get("/api/v1/api-docs")
    # Then it is the swagger 2.0 JSON describing the namespaces and actions paths
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["swagger"] == "2.0"
    assert "/namespaces" in doc["paths"]
    assert "/namespaces/{namespace}/actions/{actionName}" in doc["paths"]


async def test_namespaces_lists_the_callers_namespace(client: httpx.AsyncClient) -> None:
    # When the guest lists namespaces / Then it sees exactly its own
    r = await client.get("/api/v1/namespaces")
    assert r.status_code == 200
    assert r.json() == [GUEST]


async def test_namespace_limits(client: httpx.AsyncClient, system: Standalone) -> None:
    # When the guest reads the limits of "_" (its own namespace)
    r = await client.get(f"{NS}/limits")
    # Then they carry the platform's configured throttles
    assert r.status_code == 200
    limits = r.json()
    settings = system.settings
    assert limits["invocationsPerMinute"] == settings.invocations_per_minute
    assert limits["concurrentInvocations"] == settings.concurrent_invocations
    assert limits["firesPerMinute"] == settings.fires_per_minute
    # And the explicit name works too, another namespace does not
    assert (await client.get(f"/api/v1/namespaces/{GUEST}/limits")).json() == limits
    assert_error(await client.get("/api/v1/namespaces/other/limits"), 403, FORBIDDEN)


# -- headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1", 200),
        ("GET", f"{NS}/actions", 200),
        ("GET", f"{NS}/actions/no-such-action", 404),
        ("GET", "/api/v1/no/such/route", 404),
        ("DELETE", "/api/v1/namespaces", 405),
    ],
)
async def test_every_answer_has_a_request_id_and_cors(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    # When any request is answered, successful or not
    r = await client.request(method, path)
    # Then it carries a fresh transaction id and the CORS header
    assert r.status_code == status, r.text
    assert len(r.headers["x-request-id"]) > 0
    assert r.headers["access-control-allow-origin"] == "*"
    if status >= 400:
        assert_error(r, status)


async def test_transaction_ids_differ_per_request(client: httpx.AsyncClient) -> None:
    # When two requests come without X-Request-ID / Then each gets its own id
    a = await client.get("/api/v1")
    b = await client.get("/api/v1")
    assert a.headers["x-request-id"] != b.headers["x-request-id"]


async def test_incoming_request_id_is_echoed_and_used_as_error_code(
    client: httpx.AsyncClient,
) -> None:
    # Given a caller that sends its own X-Request-ID
    headers = {"X-Request-ID": "my-transaction-42"}
    # When the request succeeds / Then the id comes back
    ok = await client.get(f"{NS}/actions", headers=headers)
    assert ok.headers["x-request-id"] == "my-transaction-42"
    # When the request fails / Then the error's code is that id
    missing = await client.get(f"{NS}/actions/nope", headers=headers)
    assert missing.headers["x-request-id"] == "my-transaction-42"
    assert missing.json() == {"error": NOT_FOUND, "code": "my-transaction-42"}


async def test_options_preflight_is_200_with_cors(anonymous: httpx.AsyncClient) -> None:
    # When a browser sends a CORS preflight (no credentials)
    r = await anonymous.options(
        f"{NS}/actions/anything",
        headers={"Origin": "http://example.com", "Access-Control-Request-Method": "PUT"},
    )
    # Then it is answered 200 with the CORS headers
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "PUT" in r.headers["access-control-allow-methods"]
    assert r.headers["x-request-id"]


# -- authentication and entitlement -------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/namespaces", f"{NS}/actions", f"{NS}/activations", f"{NS}/limits"]
)
async def test_no_credentials_is_401(anonymous: httpx.AsyncClient, path: str) -> None:
    # When a protected resource is requested without Authorization
    r = await anonymous.get(path)
    # Then 401 with OpenWhisk's message
    assert_error(r, 401, NOT_SUPPLIED)


async def test_wrong_key_is_401(system: Standalone, guest_credentials: tuple[str, str]) -> None:
    # Given the guest's uuid with a wrong key (and an unknown uuid)
    uuid, key = guest_credentials
    wrong_key = "x" * len(key)
    transport = httpx.ASGITransport(app=system.app)
    for creds in ((uuid, wrong_key), ("00000000-0000-0000-0000-000000000000", key)):
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, auth=creds) as c:
            # When they list actions / Then 401, in OpenWhisk's error format
            r = await c.get(f"{NS}/actions")
            assert_error(r, 401)


@pytest.mark.parametrize("header", ["Bearer abc", "Basic !!!notbase64", "Basic Zm9v"])
async def test_malformed_authorization_is_401(anonymous: httpx.AsyncClient, header: str) -> None:
    # When the Authorization header is not Basic uuid:key / Then 401
    r = await anonymous.get(f"{NS}/actions", headers={"Authorization": header})
    assert_error(r, 401)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/namespaces/other/actions"),
        ("GET", "/api/v1/namespaces/other/actions/some-action"),
        ("PUT", "/api/v1/namespaces/other/actions/some-action"),
        ("DELETE", "/api/v1/namespaces/other/actions/some-action"),
        ("POST", "/api/v1/namespaces/other/actions/some-action?blocking=true"),
        ("GET", "/api/v1/namespaces/other/packages/p"),
        ("PUT", "/api/v1/namespaces/other/packages/p"),
        ("GET", "/api/v1/namespaces/other/actions/p/a"),
        ("POST", "/api/v1/namespaces/other/actions/p/a?blocking=true"),
        ("GET", "/api/v1/namespaces/other/triggers/t"),
        ("GET", "/api/v1/namespaces/other/rules/r"),
        ("GET", "/api/v1/namespaces/other/activations"),
    ],
)
async def test_another_namespace_is_403(client: httpx.AsyncClient, method: str, path: str) -> None:
    # When the guest touches a namespace that is not its own (existing or not)
    body = node_action() if method == "PUT" else None
    r = await client.request(method, path, json=body)
    # Then 403, without telling whether the entity exists
    assert_error(r, 403, FORBIDDEN)


async def test_another_namespace_is_403_even_when_the_entity_exists(
    client: httpx.AsyncClient, unique: Callable[[str], str]
) -> None:
    # Given an action that exists in the guest's namespace
    name = unique("mine")
    assert (await client.put(f"{NS}/actions/{name}", json=node_action())).status_code == 200
    # When it is addressed through a foreign namespace / Then 403 (no information leak)
    r = await client.get(f"/api/v1/namespaces/other/actions/{name}")
    assert_error(r, 403, FORBIDDEN)
    # And with the guest's namespace spelled out or as "_" it is found
    assert (await client.get(f"/api/v1/namespaces/{GUEST}/actions/{name}")).status_code == 200
    assert (await client.get(f"{NS}/actions/{name}")).json()["namespace"] == GUEST
