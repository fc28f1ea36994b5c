"""``/dashboard`` over HTTP: sign-in, the session cookie, the figures, isolation; and the
API reference page ``/api/v1/docs``. (tests/browser drives the same pages in Chromium.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from apisupport import BASE_URL, NS, PY_APP_ERROR, assert_error, get_activation, python_action
from prometheus_client.parser import text_string_to_metric_families

from squall.cli.standalone import Standalone
from squall.controller.ui.assets import vendored
from squall.controller.ui.session import COOKIE, SESSION_S
from squall.entities.activation import new_activation_id, now_ms, pending_record

pytestmark = pytest.mark.anyio

INVALID = "The supplied authentication is invalid."


@pytest.fixture
async def browser(system: Standalone) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client without credentials, as a browser is."""
    if not vendored("uPlot.iife.min.js", "swagger-ui-bundle.js"):
        pytest.fail("the vendored browser libraries are missing: run ./dev test")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, timeout=30.0
    ) as c:
        yield c


async def sign_in(client: httpx.AsyncClient, auth: str) -> httpx.Response:
    return await client.post("/dashboard/login", data={"auth": auth})


async def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_clears_it(
    system: Standalone, browser: httpx.AsyncClient
) -> None:
    # Given no session: the dashboard answers the sign-in form
    page = await browser.get("/dashboard")
    assert page.status_code == 200
    assert 'action="/dashboard/login"' in page.text
    assert (await browser.get("/dashboard/api/summary")).status_code == 401
    # When the guest signs in with its key
    answer = await sign_in(browser, system.guest_auth)
    # Then a redirect without the key, and a cookie that scripts and other sites never get
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard"
    cookie = answer.headers["set-cookie"]
    _, _, key = system.guest_auth.partition(":")
    assert key not in cookie
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "max-age", "path"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert f"max-age={SESSION_S}" in cookie.lower()
    # And the dashboard shows the namespace
    page = await browser.get("/dashboard")
    assert 'id="namespace">guest<' in page.text
    assert key not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # When it signs out / Then the cookie is gone and the figures refused
    out = await browser.post("/dashboard/logout")
    assert out.status_code == 303
    assert COOKIE not in browser.cookies
    assert (await browser.get("/dashboard/api/summary")).status_code == 401


@pytest.mark.parametrize("auth", ["nope", "x:y", ":", "guest:"])
async def test_a_wrong_key_is_refused(
    system: Standalone, browser: httpx.AsyncClient, auth: str
) -> None:
    # When someone signs in with a wrong key (or a wrong key of the right uuid)
    uuid_, _, _ = system.guest_auth.partition(":")
    answer = await sign_in(browser, auth.replace("guest", uuid_))
    # Then 401 with OpenWhisk's words and no session
    assert answer.status_code == 401
    assert INVALID in answer.text
    assert COOKIE not in browser.cookies


async def test_a_forged_cookie_is_no_session(browser: httpx.AsyncClient) -> None:
    browser.cookies.set(COOKIE, "eyJucyI6Imd1ZXN0In0.forged", path="/dashboard")
    assert (await browser.get("/dashboard/api/summary")).status_code == 401


async def test_figures_match_the_activations_and_never_show_another_namespace(
    system: Standalone, client: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    # Given a namespace of its own with three successes and two application errors
    ns = f"dash{uuid.uuid4().hex[:8]}"
    subject = await system.store.auth.create_subject(ns)
    auth = httpx.BasicAuth(subject.uuid, subject.key or "")
    ok, bad = f"ok{uuid.uuid4().hex[:6]}", f"bad{uuid.uuid4().hex[:6]}"
    ids: list[str] = []
    for name, code, times in ((ok, None, 3), (bad, PY_APP_ERROR, 2)):
        body = python_action(code) if code else python_action()
        assert (await client.put(f"{NS}/actions/{name}", json=body, auth=auth)).status_code == 200
        for _ in range(times):
            r = await client.post(f"{NS}/actions/{name}?blocking=true", json={}, auth=auth)
            ids.append(r.json()["activationId"])
    async with client_as(client, auth) as own:
        records = [await get_activation(own, i) for i in ids]
    # And a guest activation the namespace must never see
    assert (await client.put(f"{NS}/actions/{ok}", json=python_action())).status_code == 200
    guest_id = (await client.post(f"{NS}/actions/{ok}?blocking=true", json={})).json()[
        "activationId"
    ]

    # When the namespace signs in and reads its figures
    assert (await sign_in(browser, subject.auth)).status_code == 303
    summary = (await browser.get("/dashboard/api/summary?minutes=15")).json()
    listing = (await browser.get("/dashboard/api/activations")).json()["activations"]

    # Then they are those of its five activations, as the REST API reports them
    assert summary["namespace"] == ns
    statuses: dict[str, int] = {}
    for b in summary["buckets"]:
        for k, n in b["statuses"].items():
            statuses[k] = statuses.get(k, 0) + n
    assert statuses == {"success": 3, "application error": 2}
    durations = sorted(r["duration"] for r in records)
    assert max(b["p99"] for b in summary["buckets"]) <= durations[-1]
    cold = sum(1 for r in records if any(a["key"] == "initTime" for a in r["annotations"]))
    assert sum(b["cold"] for b in summary["buckets"]) == cold
    assert [(a["name"], a["count"], a["errors"]) for a in summary["busiest"]] == [
        (ok, 3, 0),
        (bad, 2, 2),
    ]
    assert sorted(a["activationId"] for a in listing) == sorted(ids)
    assert guest_id not in {a["activationId"] for a in listing}
    # And a status filter and one activation's detail
    errors = (await browser.get("/dashboard/api/activations?status=application+error")).json()
    assert {a["name"] for a in errors["activations"]} == {f"{ns}/{bad}"}
    detail = (await browser.get(f"/dashboard/api/activations/{ids[0]}")).json()
    assert detail["activation"]["activationId"] == ids[0]
    assert detail["timing"]["run"] is not None
    # And another namespace's activation is not found, as in the REST API
    assert_error(await browser.get(f"/dashboard/api/activations/{guest_id}"), 404)


def client_as(client: httpx.AsyncClient, auth: httpx.BasicAuth) -> httpx.AsyncClient:
    """The same transport, as another namespace."""
    return httpx.AsyncClient(transport=client._transport, base_url=BASE_URL, auth=auth)


async def test_bad_filters_are_bad_requests(system: Standalone, browser: httpx.AsyncClient) -> None:
    await sign_in(browser, system.guest_auth)
    for query in ("status=great", "since=yesterday"):
        assert_error(await browser.get(f"/dashboard/api/activations?{query}"), 400)
    assert_error(await browser.get("/dashboard/api/summary?minutes=7"), 400)


async def test_api_docs_page_renders_the_served_description(
    anonymous: httpx.AsyncClient,
) -> None:
    # Given what /api/v1 advertises
    advertised: dict[str, Any] = (await anonymous.get("/api/v1")).json()["swagger_paths"]
    # When the UI and the description it points at are fetched
    page = await anonymous.get(f"/api/v1{advertised['ui']}")
    spec = await anonymous.get(f"/api/v1{advertised['api-docs']}")
    # Then the page loads Swagger UI from this server, over the served description
    assert page.status_code == 200
    assert 'data-spec="/api/v1/api-docs"' in page.text
    for src in ("/dashboard/assets/swagger-ui-bundle.js", "/dashboard/assets/docs.js"):
        assert src in page.text
        asset = await anonymous.get(src)
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith("text/javascript")
    assert spec.json()["basePath"] == "/api/v1"
    # And assets outside the served list are not found
    assert (await anonymous.get("/dashboard/assets/..%2Fsession.py")).status_code == 404


async def test_the_system_namespace_sees_the_platform_and_others_do_not(
    system: Standalone, browser: httpx.AsyncClient
) -> None:
    # Given the guest signed in: no operator's view, and its figures are refused
    await sign_in(browser, system.guest_auth)
    assert 'id="platform"' not in (await browser.get("/dashboard")).text
    assert_error(await browser.get("/dashboard/api/platform"), 403)
    await browser.post("/dashboard/logout")
    # When the system namespace (OpenWhisk's administrative one) signs in
    admin = await system.store.auth.create_subject("whisk.system", rotate=True)
    assert (await sign_in(browser, admin.auth)).status_code == 303
    page = await browser.get("/dashboard")
    # Then its page has the operator's view, with the figures /metrics reports (read
    # again when a container of an earlier test changed state between the two reads:
    # a stem cell refilled in the background, say)
    assert 'id="platform"' in page.text
    for _ in range(50):
        platform = (await browser.get("/dashboard/api/platform")).json()
        metrics = (await browser.get("/metrics")).text
        scraped = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
        }
        pairs = [
            (scraped.get((name, tuple(sorted(shown["labels"].items())))), shown["value"])
            for key, name in (
                ("memoryCapacity", "squall_invoker_memory_capacity_bytes"),
                ("containers", "squall_invoker_containers"),
                ("invocations", "squall_controller_invocations_total"),
            )
            for shown in platform[key]
        ]
        if all(got == shown for got, shown in pairs):
            break
        await asyncio.sleep(0.1)
    assert pairs and all(got == shown for got, shown in pairs), pairs
    assert platform["invokers"] == [{"id": "invoker0", "status": "healthy"}]
    (capacity,) = platform["memoryCapacity"]
    assert capacity["value"] > 0


async def test_throttled_requests_show_for_their_namespace(
    system: Standalone, client: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    # Given a namespace allowed one invoke per minute, invoking four times
    ns = f"slow{uuid.uuid4().hex[:8]}"
    subject = await system.store.auth.create_subject(ns)
    await system.store.auth.set_limits(ns, {"invocationsPerMinute": 1})
    auth = httpx.BasicAuth(subject.uuid, subject.key or "")
    action = python_action()
    assert (await client.put(f"{NS}/actions/hello", json=action, auth=auth)).status_code == 200
    codes = [
        (await client.post(f"{NS}/actions/hello?blocking=true", json={}, auth=auth)).status_code
        for _ in range(4)
    ]
    refused = codes.count(429)
    # (per-minute windows restart at each minute, so a boundary may let one more through)
    assert refused >= 2
    # When it signs in and reads its figures
    await sign_in(browser, subject.auth)
    summary = (await browser.get("/dashboard/api/summary?minutes=15")).json()
    # Then the 429s are there, under OpenWhisk's limit name; no other namespace has them
    assert sum(t["count"] for t in summary["throttled"]) == refused
    assert {t["limit"] for t in summary["throttled"]} == {"invocationsPerMinute"}
    await browser.post("/dashboard/logout")
    await sign_in(browser, system.guest_auth)
    guest = (await browser.get("/dashboard/api/summary?minutes=15")).json()
    assert guest["throttled"] == []


async def test_a_sequence_detail_lists_its_steps(
    system: Standalone, client: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    # Given a sequence of two steps, run once
    step, seq = f"step{uuid.uuid4().hex[:6]}", f"seq{uuid.uuid4().hex[:6]}"
    assert (await client.put(f"{NS}/actions/{step}", json=python_action())).status_code == 200
    sequence = {"exec": {"kind": "sequence", "components": [f"/_/{step}", f"/_/{step}"]}}
    assert (await client.put(f"{NS}/actions/{seq}", json=sequence)).status_code == 200
    run = await client.post(f"{NS}/actions/{seq}?blocking=true", json={"name": "x"})
    record = await get_activation(client, run.json()["activationId"])
    # When the dashboard opens it
    await sign_in(browser, system.guest_auth)
    detail = (await browser.get(f"/dashboard/api/activations/{record['activationId']}")).json()
    # Then its steps are the step activations its record lists, in order, as list rows
    assert [s["activationId"] for s in detail["steps"]] == record["logs"]
    assert [s["name"] for s in detail["steps"]] == [f"guest/{step}"] * 2
    assert all(s["status"] == "success" for s in detail["steps"])


async def test_an_oversized_sign_in_form_is_refused(browser: httpx.AsyncClient) -> None:
    answer = await browser.post("/dashboard/login", data={"auth": "x" * 10_000})
    assert answer.status_code == 401
    assert COOKIE not in browser.cookies


async def test_a_pending_activation_shows_as_pending(
    system: Standalone, browser: httpx.AsyncClient
) -> None:
    # Given an accepted activation that has not ended (its pending record, as the
    # controller stores it before answering 202)
    ns = f"wait{uuid.uuid4().hex[:8]}"
    subject = await system.store.auth.create_subject(ns)
    record = pending_record(
        namespace=ns,
        subject=ns,
        activation_id=new_activation_id(),
        name="slow",
        path=f"{ns}/slow",
        version="0.0.1",
        accepted_ms=now_ms(),
    )
    await system.store.activations.put_pending(record)
    # When its namespace looks
    await sign_in(browser, subject.auth)
    summary = (await browser.get("/dashboard/api/summary?minutes=15")).json()
    (row,) = (await browser.get("/dashboard/api/activations")).json()["activations"]
    detail = (await browser.get(f"/dashboard/api/activations/{row['activationId']}")).json()
    # Then it is counted and listed as pending, with no latency and no run time yet
    (bucket,) = summary["buckets"]
    assert bucket["statuses"] == {"pending": 1}
    assert (bucket["p50"], bucket["cold"], bucket["warm"]) == (None, 0, 0)
    assert (row["status"], row["duration"]) == ("pending", None)
    assert detail["timing"]["run"] is None
    pending = await browser.get("/dashboard/api/activations?status=pending")
    assert [a["activationId"] for a in pending.json()["activations"]] == [row["activationId"]]
