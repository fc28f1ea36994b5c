"""The dashboard and the API reference in a real browser: Debian's Chromium, headless,
driven by playwright-core (ui/package-lock.json) through ``drive_dashboard.mjs``.

The driver reports what the page showed; this test compares it with what the REST API
says about a known set of invocations. Screenshots stay under the test's tmp dir (the
path is printed) as artefacts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _required import unavailable
from _standalone import Standalone, admin, clean_env, poll, start

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("drive_dashboard.mjs")
PLAYWRIGHT = REPO / "ui" / "node_modules" / "playwright-core"
CHROMIUM = "/usr/bin/chromium"
DRIVE_DEADLINE_S = 180

PY_OK = "def main(args):\n    print('dashboard says hi')\n    return {'ok': True}\n"
PY_APP_ERROR = "def main(args):\n    return {'error': 'bad input'}\n"


def _require_browser() -> None:
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (./dev test installs Debian's chromium)")
    if shutil.which("node") is None:
        unavailable("node is missing")
    if not PLAYWRIGHT.is_dir():
        unavailable("ui/node_modules/playwright-core is missing (./dev test runs npm ci in ui/)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    _require_browser()
    squall = start(tmp_path_factory.mktemp("dashboard-squall"), keep_warm_s=60)
    try:
        yield squall
    finally:
        squall.stop_cleanly()


def _invoke(client: httpx.Client, name: str) -> str:
    answer = client.post(f"namespaces/_/actions/{name}?blocking=true", json={})
    assert answer.status_code in (200, 502), answer.text
    activation_id: str = answer.json()["activationId"]
    return activation_id


def _record(client: httpx.Client, activation_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        r = client.get(f"namespaces/_/activations/{activation_id}")
        if r.status_code != 200 or r.json()["response"]["status"] == "pending":
            return None
        body: dict[str, Any] = r.json()
        return body

    return poll(probe, 30.0, 0.05, f"activation {activation_id}")


def test_dashboard_in_chromium(server: Standalone, tmp_path: Path) -> None:
    # Given a namespace of its own (created with squall admin, as an operator would)
    ns = f"browser{uuid.uuid4().hex[:6]}"
    auth = _create_namespace(server, ns)
    operator_auth = _create_namespace(server, "whisk.system")
    uuid_, _, key = auth.partition(":")
    # with 3 successes of "greet" and 2 application errors of "fail"
    ids: dict[str, list[str]] = {"greet": [], "fail": []}
    with server.client(auth=(uuid_, key)) as own:
        for name, code, times in (("greet", PY_OK, 3), ("fail", PY_APP_ERROR, 2)):
            action = {"exec": {"kind": "python:default", "code": code}}
            assert own.put(f"namespaces/_/actions/{name}", json=action).status_code == 200
            ids[name] = [_invoke(own, name) for _ in range(times)]
        records = {i: _record(own, i) for i in ids["greet"] + ids["fail"]}
    # and the guest's activation, which must never show
    with server.client() as guest:
        action = {"exec": {"kind": "python:default", "code": PY_OK}}
        assert (
            guest.put("namespaces/_/actions/secret?overwrite=true", json=action).status_code == 200
        )
        guest_id = _invoke(guest, "secret")

    # When the browser signs in, looks, filters, opens an activation, signs out, and
    # tries the API reference
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    seen = _drive(
        {
            "base": server.api_host,
            "auth": auth,
            "wrongAuth": f"{uuid_}:{'x' * len(key)}",
            "operatorAuth": operator_auth,
            "chromium": CHROMIUM,
            "playwright": str(PLAYWRIGHT),
            "profile": str(tmp_path / "profile"),
            "shots": str(shots),
            "errorStatus": "application error",
            "nameFilter": "greet",
        }
    )

    # Then a wrong key was refused, with no cookie
    assert seen["wrong"]["error"] == "The supplied authentication is invalid."
    assert seen["wrong"]["cookies"] == []
    # And the session cookie is HttpOnly and SameSite=Strict, and expires; the key is
    # nowhere in the page, its URL or its storage
    assert seen["cookie"]["httpOnly"] is True
    assert seen["cookie"]["sameSite"] == "Strict"
    assert seen["cookie"]["expires"] > 0
    signed = seen["signedIn"]
    assert signed["url"] == f"{server.api_host}/dashboard"
    assert "squall_session" not in signed["documentCookie"]
    for where in ("url", "html", "localStorage", "sessionStorage"):
        assert key not in signed[where], where
    # And the figures are those of the five activations, as the REST API reports them
    assert signed["namespace"] == ns
    assert signed["tiles"] == {
        "total": "5",
        "errors": "2",
        "pending": "0",
        "cold": _cold(records),
        "throttled": "0",
    }
    assert dict(signed["statusPlot"]) == {
        "success": 3,
        "application error": 2,
        "action developer error": 0,
        "whisk internal error": 0,
        "pending": 0,
    }
    assert signed["coldPlot"] + signed["warmPlot"] == 5
    assert str(signed["coldPlot"]) == _cold(records)
    assert signed["p99Max"] == max(r["duration"] for r in records.values())
    assert [row[:3] for row in signed["busiest"]] == [["greet", "3", "0"], ["fail", "2", "2"]]
    assert sorted(signed["rows"]) == sorted(records)
    assert guest_id not in signed["rows"]
    # And the filters kept the two errors, the three of "greet", none in the future; the
    # detail shows the newest error
    assert sorted(seen["filtered"]) == sorted(ids["fail"])
    assert sorted(seen["byName"]) == sorted(ids["greet"])
    assert seen["future"] == "no activations match"
    newest = seen["filtered"][0]
    assert seen["detail"]["id"] == newest
    assert seen["detail"]["status"] == "application error"
    assert json.loads(seen["detail"]["result"]) == records[newest]["response"]["result"]
    # And signing out ended the session
    assert "squall_session" not in seen["signedOut"]["cookies"]
    assert seen["signedOut"]["summary"] == 401
    # And "try it out" in the API reference listed the namespace
    assert seen["tryItOut"]["status"] == "200"
    assert json.loads(seen["tryItOut"]["body"]) == [ns]
    # And the system namespace saw the operator's view: the invoker, its memory
    assert seen["operator"]["invokers"] == [["invoker0", "healthy"]]
    assert seen["operator"]["memory"].endswith(" MB")
    # And its figures followed a new activation live, without a reload
    assert seen["live"] == {"invoked": 200, "before": "0", "after": "1", "sameDocument": True}
    # And the pages loaded nothing from anywhere but this server, without script errors
    assert all(u.startswith(server.api_host + "/") for u in seen["requests"]), seen["requests"]
    assert seen["console"] == [], seen["console"]
    # and no request failed but the two refused on purpose
    base = server.api_host
    assert seen["failed"] == [
        [401, "POST", f"{base}/dashboard/login"],
        [401, "GET", f"{base}/dashboard/api/summary"],
    ]
    for path in seen["shots"].values():
        assert Path(path).stat().st_size > 0


def _cold(records: dict[str, dict[str, Any]]) -> str:
    return str(
        sum(1 for r in records.values() if any(a["key"] == "initTime" for a in r["annotations"]))
    )


def _create_namespace(server: Standalone, namespace: str) -> str:
    """A namespace and its ``uuid:key``, made with ``squall admin`` as an operator would."""
    return admin(server.home, "user", "create", namespace).splitlines()[-1]


def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(DRIVER)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=DRIVE_DEADLINE_S,
        env=clean_env(),
        check=False,
    )
    assert done.returncode == 0, f"the browser driver failed:\n{done.stderr[-6000:]}"
    seen: dict[str, Any] = json.loads(done.stdout)
    return seen
