"""nginx with TLS (deploy/nginx/, a self-signed certificate) in front of the cluster's two
controllers, driven over https by the official ``openwhisk`` npm client; and a
namespace's throttles holding across both controllers behind it (counts shared in NATS,
squall/bus/nats_counters.py)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from clustersupport import Cluster
from netsupport import OutsideHost, listen_in

from squall.config import Settings
from squall.controller.throttle import too_many_concurrent
from squall.store.contracts import Subject
from squall.store.factory import open_store

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))  # nginxsupport lives beside the other test directories

from _standalone import poll  # noqa: E402
from nginxsupport import Nginx, nginx_in_front  # noqa: E402

pytestmark = pytest.mark.cluster

COMPAT = TESTS / "compat"


@pytest.fixture(scope="module")
def front(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    upstreams = [member.url for member in cluster.local.controllers]
    with nginx_in_front(tmp_path_factory.mktemp("nginx"), upstreams) as server:
        yield server


def invocations(url: str) -> float:
    page = httpx.get(f"{url}/metrics", timeout=5, trust_env=False).text
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^squall_controller_invocations_total\{[^}]*\} (\S+)$", page, re.M)
    )


def test_the_openwhisk_client_over_https_through_nginx_to_two_controllers(
    cluster: Cluster, front: Nginx
) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed"
    assert (COMPAT / "node_modules" / "openwhisk").is_dir(), "run ./dev test (npm install)"
    before = [invocations(m.url) for m in cluster.local.controllers]
    # When the official client, pointed at nginx, creates and invokes actions, fetches a web
    # action and uploads 11 MB of code
    done = subprocess.run(
        [node, str(COMPAT / "https_client.js")],
        cwd=COMPAT,
        env={
            "PATH": "/usr/bin:/bin",
            "SQUALL_APIHOST": front.url,
            "SQUALL_AUTH": cluster.local.auth,
            "SQUALL_PREFIX": uuid.uuid4().hex[:8],
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # Then it works as against one server
    assert "self-signed certificate" in seen["refused"]["failed"]["message"]
    assert seen["invoked"] == {"status": "success", "result": {"greeting": "Hello nginx"}}
    assert seen["fetched"]["status"] == 200
    assert seen["fetched"]["body"]["headers"]["x-forwarded-proto"] == "https"
    assert seen["big"]["codeBytes"] > 10 * 1024 * 1024
    assert seen["big"]["result"] == {"big": True}
    # And with more invokes through nginx, both controllers answered some
    uuid_, _, key = cluster.local.auth.partition(":")
    with httpx.Client(verify=False, auth=(uuid_, key), timeout=60, trust_env=False) as client:
        name = f"spread-{uuid.uuid4().hex[:8]}"
        body = {"exec": {"kind": "nodejs:20", "code": "function main() { return {}; }"}}
        assert client.put(f"{front.api}/namespaces/_/actions/{name}", json=body).status_code == 200
        for _ in range(10):
            r = client.post(f"{front.api}/namespaces/_/actions/{name}?blocking=true")
            assert r.status_code == 200, r.text
    after = [invocations(m.url) for m in cluster.local.controllers]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)


# -- limits across the cluster -------------------------------------------------------

# An action that runs until the test's Gate lets its POST through.
GATED_JS = """
const http = require('http');
function main(params) {
  return new Promise((resolve) => {
    const req = http.request(params.gate, {method: 'POST'}, (res) => {
      res.resume();
      res.on('end', () => resolve({passed: true}));
    });
    req.on('error', (e) => resolve({error: String(e)}));
    req.end();
  });
}
"""
NOOP_JS = "function main() { return {}; }"
PER_MINUTE = re.compile(
    r"^Too many requests in the last minute \(count: (\d+), allowed: (\d+)\)\.$"
)


class Gate:
    """An HTTP server on the test's outside host that holds every POST until
    :meth:`open`, so actions that call it stay in flight as long as the test wants."""

    def __init__(self, host: OutsideHost) -> None:
        self.opened = threading.Event()
        opened = self.opened

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                opened.wait(120)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer((host.public, 0), Handler, bind_and_activate=False)
        self._server.socket.close()
        self._server.socket = listen_in(host.netns, host.public)
        self.url = f"http://{host.public}:{self._server.socket.getsockname()[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def open(self) -> None:
        self.opened.set()

    def close(self) -> None:
        self.opened.set()
        self._server.shutdown()
        self._server.server_close()


def limited_namespace(cluster: Cluster, limits: dict[str, int]) -> tuple[str, str]:
    """A new namespace with its own stored limits; its (uuid, key)."""
    name = f"limited-{uuid.uuid4().hex[:8]}"

    async def create() -> Subject:
        store = await open_store(Settings(store_url=cluster.pg.url))
        try:
            subject = await store.auth.create_subject(name)
            await store.auth.set_limits(name, limits)
            return subject
        finally:
            await store.close()

    subject = asyncio.run(create())
    assert subject.key is not None
    return subject.uuid, subject.key


def throttled(url: str, reason: str) -> float:
    page = httpx.get(f"{url}/metrics", timeout=5, trust_env=False).text
    pattern = rf'^squall_controller_throttled_requests_total\{{reason="{reason}"\}} (\S+)$'
    found = re.search(pattern, page, re.M)
    return float(found.group(1)) if found else 0.0


def wait_for_a_fresh_minute(margin_s: float = 20.0) -> None:
    """Return at once when ``margin_s`` of this wall-clock minute remain, else when the
    next minute begins: the per-minute window must not end half-way through a test."""
    while 60 - time.time() % 60 < margin_s:
        time.sleep(0.2)


def test_invocations_per_minute_hold_across_both_controllers(
    cluster: Cluster, front: Nginx
) -> None:
    # Given a namespace allowed 6 invocations per minute and two controllers behind nginx
    allowed = 6
    auth = limited_namespace(cluster, {"invocationsPerMinute": allowed})
    controllers = [m.url for m in cluster.local.controllers]
    with httpx.Client(verify=False, auth=auth, timeout=60, trust_env=False) as client:
        body = {"exec": {"kind": "nodejs:20", "code": NOOP_JS}}
        assert client.put(f"{front.api}/namespaces/_/actions/noop", json=body).status_code == 200
        before = [invocations(url) for url in controllers]
        refused_before = [throttled(url, "invocationsPerMinute") for url in controllers]
        wait_for_a_fresh_minute()
        minute = int(time.time() // 60)
        # When it asks for 16 (non-blocking: quick, all in this minute) through nginx
        answers = [client.post(f"{front.api}/namespaces/_/actions/noop?blocking=false")
                   for _ in range(16)]  # fmt: skip
        assert int(time.time() // 60) == minute, "the minute ended during the burst"
    # Then exactly 6 are accepted, the rest refused with OpenWhisk's 429
    accepted = [r for r in answers if r.status_code == 202]
    refused = [r for r in answers if r.status_code == 429]
    assert len(accepted) == allowed, [r.text for r in answers]
    assert len(refused) == len(answers) - allowed, [r.text for r in answers]
    for r in refused:
        match = PER_MINUTE.match(r.json()["error"])
        assert match is not None, r.text
        assert int(match.group(2)) == allowed and int(match.group(1)) > allowed, r.text
    # And both controllers accepted some and refused some: each counted the other's
    after = [invocations(url) for url in controllers]
    refused_after = [throttled(url, "invocationsPerMinute") for url in controllers]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    assert all(a > b for a, b in zip(refused_after, refused_before, strict=True)), (
        refused_before,
        refused_after,
    )


def test_fires_per_minute_hold_across_both_controllers(cluster: Cluster, front: Nginx) -> None:
    # Given a namespace allowed 4 trigger fires per minute, and a trigger without rules
    allowed = 4
    auth = limited_namespace(cluster, {"firesPerMinute": allowed})
    controllers = [m.url for m in cluster.local.controllers]
    with httpx.Client(verify=False, auth=auth, timeout=60, trust_env=False) as client:
        url = f"{front.api}/namespaces/_/triggers/tick"
        assert client.put(url, json={}).status_code == 200
        refused_before = [throttled(u, "firesPerMinute") for u in controllers]
        wait_for_a_fresh_minute()
        minute = int(time.time() // 60)
        # When it is fired 10 times through nginx
        answers = [client.post(url, json={"n": i}) for i in range(10)]
        assert int(time.time() // 60) == minute, "the minute ended during the burst"
    # Then exactly 4 fires are taken (204: no rule to run), the rest refused with a 429
    assert [r.status_code for r in answers].count(204) == allowed, [r.text for r in answers]
    refused = [r for r in answers if r.status_code == 429]
    assert len(refused) == len(answers) - allowed, [r.text for r in answers]
    for r in refused:
        match = PER_MINUTE.match(r.json()["error"])
        assert match is not None and int(match.group(2)) == allowed, r.text
    # And both controllers refused some
    refused_after = [throttled(u, "firesPerMinute") for u in controllers]
    assert all(a > b for a, b in zip(refused_after, refused_before, strict=True)), (
        refused_before,
        refused_after,
    )


def test_concurrent_invocations_hold_across_both_controllers(
    cluster: Cluster, front: Nginx
) -> None:
    # Given a namespace allowed 3 concurrent invocations, and an action that runs until
    # the test's gate opens
    allowed = 3
    auth = limited_namespace(cluster, {"concurrentInvocations": allowed})
    controllers = [m.url for m in cluster.local.controllers]
    gate = Gate(cluster.outside)
    try:
        with httpx.Client(verify=False, auth=auth, timeout=60, trust_env=False) as client:
            body = {
                "exec": {"kind": "nodejs:20", "code": GATED_JS},
                "parameters": [{"key": "gate", "value": gate.url}],
            }
            url = f"{front.api}/namespaces/_/actions/gated"
            assert client.put(url, json=body).status_code == 200
            refused_before = [throttled(u, "concurrentInvocations") for u in controllers]
            # When 3 are accepted through nginx (spread over both controllers)
            ids = []
            for _ in range(allowed):
                r = client.post(f"{url}?blocking=false")
                assert r.status_code == 202, r.text
                ids.append(r.json()["activationId"])
            # Then 4 more, through either controller, are refused with OpenWhisk's 429
            for _ in range(4):
                r = client.post(f"{url}?blocking=false")
                assert r.status_code == 429, r.text
                assert r.json()["error"] == too_many_concurrent(allowed, allowed), r.text
            refused_after = [throttled(u, "concurrentInvocations") for u in controllers]
            assert all(a > b for a, b in zip(refused_after, refused_before, strict=True)), (
                refused_before,
                refused_after,
            )
            # When they end
            gate.open()
            for activation in ids:
                poll_final(client, f"{front.api}/namespaces/_/activations/{activation}")

            # Then the namespace is admitted again (the releases reach both controllers)
            def admitted() -> bool | None:
                r = client.post(f"{url}?blocking=true")
                return True if r.status_code == 200 else None

            poll(admitted, 30, 0.2, "an invoke after the three ended")
    finally:
        gate.close()


def poll_final(client: httpx.Client, url: str) -> None:
    def final() -> bool | None:
        r = client.get(url)
        if r.status_code == 200 and r.json().get("end"):
            assert r.json()["response"]["result"] == {"passed": True}, r.text
            return True
        return None

    poll(final, 60, 0.2, f"the record at {url}")
