"""nginx with TLS (deploy/nginx/, a self-signed certificate) in front of the cluster's two
controllers, driven over https by the official ``openwhisk`` npm client."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clustersupport import Cluster

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))  # nginxsupport lives beside the other test directories

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
