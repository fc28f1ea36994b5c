"""The dashboard on a cluster: every controller serves it, and a session signed in
through one controller is accepted by the other (they share the signing secret)."""

from __future__ import annotations

import uuid

import httpx
from clustersupport import Cluster

NODE_OK = "function main() { return {ok: true}; }"


def test_a_session_from_one_controller_works_on_the_other(cluster: Cluster) -> None:
    # Given an action run twice through controller 0
    name = f"dash-{uuid.uuid4().hex[:8]}"
    with cluster.client(0) as c0:
        action = {"exec": {"kind": "nodejs:default", "code": NODE_OK}}
        assert c0.put(f"/api/v1/namespaces/_/actions/{name}", json=action).status_code == 200
        for _ in range(2):
            r = c0.post(f"/api/v1/namespaces/_/actions/{name}?blocking=true", json={})
            assert r.status_code == 200, r.text
    urls = [m.url for m in cluster.local.controllers]
    # When the guest signs in through controller 0
    with httpx.Client(base_url=urls[0], trust_env=False, timeout=30) as first:
        signed = first.post("/dashboard/login", data={"auth": cluster.local.auth})
        assert signed.status_code == 303, signed.text
        cookie = first.cookies.get("squall_session")
        assert cookie
    # Then controller 1 accepts the session and shows the same figures, from PostgreSQL
    with httpx.Client(base_url=urls[1], trust_env=False, timeout=30) as second:
        second.cookies.set("squall_session", cookie, path="/dashboard")
        summary = second.get("/dashboard/api/summary?minutes=15")
        assert summary.status_code == 200, summary.text
        busiest = {a["name"]: a["count"] for a in summary.json()["busiest"]}
        assert busiest[name] == 2
        assert second.get("/dashboard").text.count('id="namespace">guest<') == 1
