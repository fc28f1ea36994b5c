"""Two controllers and two invokers over PostgreSQL and NATS, broken in the ways a
production cluster breaks: an invoker killed mid-run, a controller restarted, NATS
restarted under load, PostgreSQL stopped for 20 s.

The module shares one cluster; every test that breaks something puts it back (and waits
until every invoker is healthy again) before it ends.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import subprocess
import time
import uuid
from typing import Any

import crashsupport as crash
import httpx
import pytest
from _apikey import NODE_ECHO, NODE_REAL, PY_WHO_AM_I, derive
from _polling import until_blocking
from clustersupport import PG_BIN, Cluster, recovered
from netsupport import HTTP_PORT, NAME
from netsupport import WITNESS_JS as WITNESS

from squall.invoker.apikeys import SECRET_FILE

pytestmark = pytest.mark.cluster

NOOP = "function main(params) { return {hello: params.name || 'world'}; }"
LOST = "stopped before it completed"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(client: httpx.Client, name: str, code: str = NOOP, **params: Any) -> None:
    body = {
        "exec": {"kind": "nodejs:20", "code": code},
        "parameters": [{"key": k, "value": v} for k, v in params.items()],
        "limits": {"timeout": 60000, "memory": 128},
    }
    r = client.put(f"/api/v1/namespaces/_/actions/{name}?overwrite=true", json=body)
    assert r.status_code == 200, r.text


def invoke(client: httpx.Client, name: str, *, blocking: bool, **payload: Any) -> httpx.Response:
    flag = "true" if blocking else "false"
    return client.post(f"/api/v1/namespaces/_/actions/{name}?blocking={flag}", json=payload)


def final_record(client: httpx.Client, activation_id: str, deadline_s: float) -> dict[str, Any]:
    end = time.monotonic() + deadline_s
    last = ""
    while time.monotonic() < end:
        r = client.get(f"/api/v1/namespaces/_/activations/{activation_id}")
        last = f"{r.status_code} {r.text[:200]}"
        if r.status_code == 200 and r.json()["response"].get("status") != "pending":
            return dict(r.json())
        time.sleep(0.2)
    raise AssertionError(f"no final record for {activation_id}: {last}")


def invoker_activations(cluster: Cluster) -> dict[str, int]:
    return {
        m.name: httpx.get(f"{m.url}/ping", timeout=5).json()["activations"]
        for m in cluster.local.invokers
    }


def test_an_action_created_through_one_controller_runs_through_the_other(
    cluster: Cluster,
) -> None:
    # Given an action created through controller 0
    name = unique("across")
    with cluster.client(0) as c0, cluster.client(1) as c1:
        create(c0, name)
        # When controller 1 invokes it
        r = c1.post(f"/api/v1/namespaces/_/actions/{name}?blocking=true&result=true", json={})
        # Then it runs and answers
        assert r.status_code == 200, r.text
        assert r.json() == {"hello": "world"}
        # And an update through controller 1 reaches controller 0 (its cache invalidated)
        create(c1, name, "function main() { return {version: 2}; }")
        end = time.monotonic() + 10
        while True:
            r = c0.post(f"/api/v1/namespaces/_/actions/{name}?blocking=true&result=true")
            if r.json() == {"version": 2} or time.monotonic() > end:
                break
            time.sleep(0.1)
        assert r.json() == {"version": 2}


def test_secrets_stored_through_the_cluster_are_not_in_a_pg_dump(cluster: Cluster) -> None:
    # Given secrets stored through controller 0: an action's and a package's default
    # parameters, and a log-forwarding credential
    secrets = {k: unique(f"{k}-secret") for k in ("action", "package", "credential")}
    name, pkg = unique("vault"), unique("vaultpkg")
    with cluster.client(0) as c0, cluster.client(1) as c1:
        create(c0, name, token=secrets["action"])
        body = {"parameters": [{"key": "pw", "value": secrets["package"]}]}
        assert c0.put(f"/api/v1/namespaces/_/packages/{pkg}", json=body).status_code == 200
        splunk = {
            "host": "127.0.0.1",
            "port": "9",
            "index": "i",
            "hec_token": secrets["credential"],
        }
        lf = "/runtime/namespaces/guest/logForwarding"
        assert c0.put(lf, json={"splunk_hec": splunk}).status_code == 200
        # Then controller 1 shows the owner its parameters and an invoker runs the action
        got = c1.get(f"/api/v1/namespaces/_/actions/{name}").json()
        assert got["parameters"] == [{"key": "token", "value": secrets["action"]}]
        r = c1.post(f"/api/v1/namespaces/_/actions/{name}?blocking=true&result=true", json={})
        assert r.status_code == 200 and r.json() == {"hello": "world"}, r.text
        # And a dump of the cluster's database holds none of them
        dump = subprocess.run(
            [str(PG_BIN / "pg_dump"), "--no-password", cluster.pg.url],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        assert b'"key":"token"' in dump and b'"key":"hec_token"' in dump  # documents are there
        assert [k for k, v in secrets.items() if v.encode() in dump] == []
        assert c0.put(lf, json={"adobe_io_runtime": {}}).status_code == 200


def test_the_standard_catalog_is_installed_once_and_runs_through_either_controller(
    cluster: Cluster,
) -> None:
    # Given two controllers that installed /whisk.system at the same start
    with cluster.client(0) as c0, cluster.client(1) as c1:
        for client in (c0, c1):
            # When either lists /whisk.system and invokes /whisk.system/utils/sort
            listed = client.get("/api/v1/namespaces/whisk.system/packages")
            assert listed.status_code == 200, listed.text
            packages = {p["name"]: p for p in listed.json()}
            # Then utils, samples and alarms are there, each written once (first version)
            assert {"utils", "samples", "alarms"} <= set(packages)
            utils = client.get("/api/v1/namespaces/whisk.system/packages/utils").json()
            assert {a["version"] for a in utils["actions"]} == {"0.0.1"}
            r = client.post(
                "/api/v1/namespaces/whisk.system/actions/utils/sort?blocking=true&result=true",
                json={"lines": ["b", "c", "a"]},
            )
            assert r.status_code == 200, r.text
            assert r.json() == {"lines": ["a", "b", "c"], "length": 3}


def test_load_spreads_across_invokers(cluster: Cluster) -> None:
    # Given twelve distinct actions (distinct home invokers by hashing)
    before = invoker_activations(cluster)
    names = [unique("spread") for _ in range(12)]
    with cluster.client(0) as c0, cluster.client(1) as c1:
        for name in names:
            create(c0, name)
        # When each is invoked through either controller
        for i, name in enumerate(names):
            r = invoke(c1 if i % 2 else c0, name, blocking=True)
            assert r.status_code == 200, r.text
    # Then both invokers ran some of them
    after = invoker_activations(cluster)
    ran = {name: after[name] - before[name] for name in after}
    assert all(n > 0 for n in ran.values()), ran
    assert sum(ran.values()) >= len(names)
    # And each invoker's /metrics counts what it ran; a controller's, every invoker's queue
    for member in cluster.local.invokers:
        page = httpx.get(f"{member.url}/metrics", timeout=5).text
        assert 'squall_invoker_activations_total{kind="nodejs:20",status="success"}' in page
    page = httpx.get(f"{cluster.local.controllers[0].url}/metrics", timeout=5).text
    assert 'squall_controller_invoker_queue_length{invoker="invoker1"}' in page


def test_actions_on_every_invoker_call_the_platform_with_one_action_key(
    cluster: Cluster,
) -> None:
    # Given actions that ask for the key, spread over both invokers (distinct names), a
    # Node.js action driving the openwhisk npm client, and a trigger with a rule
    names = [unique("who") for _ in range(12)]
    echo, trigger, sdk = unique("echo"), unique("ping"), unique("sdk")
    wants_key = [{"key": "provide-api-key", "value": True}]
    before = invoker_activations(cluster)
    with cluster.client(0) as c0, cluster.client(1) as c1:
        for name in names:
            body = {"exec": {"kind": "python:3.11", "code": PY_WHO_AM_I}, "annotations": wants_key}
            r = c0.put(f"/api/v1/namespaces/_/actions/{name}", json=body)
            assert r.status_code == 200, r.text
        create(c0, echo, NODE_ECHO)
        assert c0.put(f"/api/v1/namespaces/_/triggers/{trigger}", json={}).status_code == 200
        rule = {"trigger": f"/_/{trigger}", "action": f"/_/{echo}"}
        assert c0.put(f"/api/v1/namespaces/_/rules/{unique('r')}", json=rule).status_code == 200
        body = {"exec": {"kind": "nodejs:20", "code": NODE_REAL}, "annotations": wants_key}
        assert c1.put(f"/api/v1/namespaces/_/actions/{sdk}", json=body).status_code == 200
        # When each runs, through either controller
        results = []
        for i, name in enumerate(names):
            r = invoke(c1 if i % 2 else c0, name, blocking=True)
            assert r.status_code == 200, r.text
            results.append(r.json()["response"]["result"])
        url = f"http://{NAME}:{HTTP_PORT}/"  # the test's outside host, by name
        r = invoke(c1, sdk, blocking=True, target=echo, trigger=trigger, url=url)
        assert r.status_code == 200, r.text
        sdk_result = r.json()["response"]["result"]
        # Then every action reached the API (the first controller, __OW_API_HOST) as guest
        # with the same action key, whichever invoker minted it and whichever ran it
        assert all(r["status"] == 200 and r["namespaces"] == ["guest"] for r in results), results
        assert len({r["uuid"] for r in results}) == 1
        after = invoker_activations(cluster)
        assert all(after[m] > before[m] for m in after), (before, after)
        # And the npm client invoked the action and fired the trigger, whose rule ran it
        assert sdk_result["page"]["outside"] is True
        assert sdk_result["called"] == {"hello": "node", "namespace": "guest"}
        fired = sdk_result["triggerActivationId"]
        assert final_record(c0, fired, 30)["name"] == trigger
        end = time.monotonic() + 30
        while True:
            listed = c0.get(f"/api/v1/namespaces/_/activations?name={echo}&docs=true").json()
            by_rule = [
                a for a in listed
                if a.get("cause") == fired and a["response"]["status"] != "pending"
            ]  # fmt: skip
            if by_rule or time.monotonic() > end:
                break
            time.sleep(0.2)
        assert by_rule, f"no activation of {echo} caused by {fired}"
        assert by_rule[0]["response"]["result"] == {"from": "node", "namespace": "guest"}
        records = c0.get("/api/v1/namespaces/_/activations?docs=true&limit=200").json()
    # And the key (derived from the shared secret) is in no record, log or /metrics
    assert stored_action_key(cluster) == results[0]["uuid"]
    key = derive(cluster.local.home / SECRET_FILE, results[0]["uuid"])
    basic = base64.b64encode(f"{results[0]['uuid']}:{key}".encode()).decode()
    pages = [json.dumps(records)]
    pages += [httpx.get(f"{m.url}/metrics", timeout=5).text for m in cluster.local.members.values()]
    pages += [m.log_path.read_text(errors="replace") for m in cluster.local.members.values()]
    assert all(key not in page and basic not in page for page in pages)


def stored_action_key(cluster: Cluster) -> str:
    """The guest's action key uuid as stored in the cluster's PostgreSQL."""
    from squall.store.postgres import PostgresStore

    async def read() -> str | None:
        store = await PostgresStore.open(cluster.pg.url, max_size=1)
        try:
            return await store.auth.get_action_key("guest")
        finally:
            await store.close()

    found = asyncio.run(read())
    assert found is not None
    return found


def recovery_log(cluster: Cluster) -> list[str]:
    """What the controllers logged of invokers going offline and of their recovery, to
    explain a failure (a loaded machine may delay an invoker's pings past the limit)."""
    words = ("offline", "unresponsive", "restarted", "moving its queue", "recorded as failed")
    return [
        f"{member.name}: {line}"
        for member in cluster.local.controllers
        for line in member.log_path.read_text(errors="replace").splitlines()
        if any(word in line for word in words)
    ]


def test_an_invoker_killed_with_queued_work_moves_what_never_started_and_runs_none_twice(
    cluster: Cluster,
) -> None:
    # Given a slow action (3 s, 512 MB: 8 at a time per invoker) that reports every run
    # to the witness
    name = unique("witnessed")
    body = {
        "exec": {"kind": "nodejs:20", "code": WITNESS},
        "parameters": [
            {"key": "witness", "value": cluster.witness.url},
            {"key": "sleepMs", "value": 3000},
        ],
        "limits": {"timeout": 60000, "memory": 512},
    }
    before = recovered(cluster)
    pool = concurrent.futures.ThreadPoolExecutor(10)
    try:
        with cluster.client(0) as c0, cluster.client(1) as c1:
            r = c0.put(f"/api/v1/namespaces/_/actions/{name}", json=body)
            assert r.status_code == 200, r.text
            invoke(c0, name, blocking=True)  # warm, and checks the witness is reachable
            invoker0 = next(m for m in cluster.local.invokers if m.name == "invoker0")
            taken_before = invoker_activations(cluster)["invoker0"]
            slots = httpx.get(f"{invoker0.url}/ping", timeout=5).json()["userMemoryMb"] // 512
            ids: list[str] = []
            # When 50 non-blocking and 10 blocking invocations are under way
            for i in range(50):
                r = invoke(c1 if i % 2 else c0, name, blocking=False)
                assert r.status_code == 202, r.text
                ids.append(r.json()["activationId"])

            def blocking(i: int) -> httpx.Response:
                with cluster.client(i % 2) as client:
                    return invoke(client, name, blocking=True)

            futures = [pool.submit(blocking, i) for i in range(10)]
            # And invoker0 took more than it can run at once (some of it waits there)
            end = time.monotonic() + 30
            while invoker_activations(cluster)["invoker0"] - taken_before <= slots:
                assert time.monotonic() < end, "invoker0 never held more than it runs"
                time.sleep(0.05)
            # And it is killed with SIGKILL
            cluster.local.kill("invoker0")
            # Then every blocking caller gets its answer (never a hang past the wait): the
            # record, or 202 with the id while it still runs
            for future in futures:
                r = future.result(timeout=120)
                assert r.status_code in (200, 202, 500), r.text
                if r.status_code == 202:
                    assert set(r.json()) == {"activationId"}, r.text
                else:
                    assert r.json()["response"]["status"] == (
                        "success" if r.status_code == 200 else "whisk internal error"
                    ), r.text
                ids.append(r.json()["activationId"])
            # And every activation ends with a final record
            records = [final_record(c0, i, 120) for i in ids]
        assert len(set(ids)) == 60
        # And none ran twice
        twice = {k: n for k, n in cluster.witness.calls.items() if n > 1}
        assert not twice, twice
        # And only what had started on invoker0 was lost, saying why; everything else ran
        lost = [r for r in records if r["response"]["status"] == "whisk internal error"]
        ok = [r for r in records if r["response"]["status"] == "success"]
        assert len(lost) + len(ok) == 60, [r["response"] for r in records]
        assert all(LOST in r["response"]["result"]["error"] for r in lost), (
            [r["response"] for r in lost],
            recovery_log(cluster),
        )
        assert all(cluster.witness.calls[r["activationId"]] == 1 for r in ok)
        after = recovered(cluster)
        taken_over = {k: after[k] - before[k] for k in after}
        # And work invoker0 had taken but never started was moved, not failed: only runs
        # it had started were lost (at most as many as it runs at once)
        assert taken_over["moved"] > 0, taken_over
        assert len(lost) <= taken_over["lost"], (taken_over, len(lost))
        assert len(lost) <= slots, (slots, len(lost))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        # The invoker comes back and is used again, whatever happened above
        if not cluster.local.members["invoker0"].running:
            cluster.local.spawn("invoker0")
        cluster.local.wait_ready()


def test_a_restarted_controller_loses_no_accepted_work(cluster: Cluster) -> None:
    # Given 20 accepted non-blocking invocations through controller 0
    name, slow, seq = unique("accepted"), unique("slow"), unique("seq")
    store_url, home = cluster.local.store_url, str(cluster.local.home)
    with cluster.client(1) as c1:
        create(c1, name, WITNESS, witness=cluster.witness.url, sleepMs=500)
        create(c1, slow, WITNESS, witness=cluster.witness.url, sleepMs=4000)
        steps = [f"/_/{slow}", f"/_/{name}"]
        r = c1.put(
            f"/api/v1/namespaces/_/actions/{seq}",
            json={"exec": {"kind": "sequence", "components": steps}},
        )
        assert r.status_code == 200, r.text
        with cluster.client(0) as c0:
            ids = []
            for _ in range(20):
                r = invoke(c0, name, blocking=False)
                assert r.status_code == 202, r.text
                ids.append(r.json()["activationId"])
            # And a sequence controller 0's composer has started (its first step runs)
            r = invoke(c0, seq, blocking=False)
            assert r.status_code == 202, r.text
            started = r.json()["activationId"]
        assert until_blocking(lambda: started in crash.unfinished(store_url, home).started, 60)
        # When controller 0 is killed
        cluster.local.kill("controller0")
        # And (as a kill between accepting a sequence and starting it leaves) a sequence
        # an earlier incarnation of controller 0 accepted and never started is stored
        queued = crash.leave_unstarted_run(
            store_url, home, ("guest", cluster.auth[0]), seq, "0/gone"
        )
        # And controller 0 is started again
        cluster.local.spawn("controller0")
        cluster.local.wait_ready()
        # Then every accepted activation ran once and has its record
        for activation_id in ids:
            record = final_record(c1, activation_id, 60)
            assert record["response"]["status"] == "success", (
                record["response"],
                recovery_log(cluster),
            )
            assert cluster.witness.calls[activation_id] == 1
        # And the started sequence ended with the error saying why, not run again
        cut = final_record(c1, started, 90)
        assert cut["response"]["status"] == "whisk internal error", cut["response"]
        assert "stopped while it was running" in cut["response"]["result"]["error"]
        # And the one that never started ran, once, to its result
        ran = final_record(c1, queued, 90)
        assert ran["response"]["status"] == "success", ran["response"]
        assert len(ran["logs"]) == 2
        assert [cluster.witness.calls[step] for step in ran["logs"]] == [1, 1]


def test_nats_restarted_under_load_duplicates_nothing_and_hangs_nothing(
    cluster: Cluster,
) -> None:
    # Given a steady load of blocking invocations through both controllers
    name = unique("steady")
    with cluster.client(0) as c0:
        create(c0, name, WITNESS, witness=cluster.witness.url, sleepMs=100)
        assert invoke(c0, name, blocking=True).status_code == 200
    stop_at = time.monotonic() + 8

    def load(i: int) -> list[tuple[bool, int, str]]:
        """(hung, status, activation id) of each request; a request still unanswered past
        the blocking wait (60 s) and a margin is cut by the client's deadline: hung."""
        out: list[tuple[bool, int, str]] = []
        with cluster.client(i % 2, timeout=65) as client:
            while time.monotonic() < stop_at:
                try:
                    r = invoke(client, name, blocking=True)
                    body = (
                        r.json()
                        if r.headers.get("content-type", "").startswith("application/json")
                        else {}
                    )
                    out.append((False, r.status_code, body.get("activationId", "")))
                except httpx.TimeoutException:
                    out.append((True, 0, ""))
                except httpx.TransportError:
                    out.append((False, 0, ""))
        return out

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(load, i) for i in range(4)]
        time.sleep(2)
        # When NATS restarts in the middle of it
        cluster.nats.stop()
        time.sleep(1.5)
        cluster.nats.start()
        results = [x for f in futures for x in f.result(timeout=180)]
    # Then no request waited past the blocking wait (60 s) and a bit
    assert results and not [r for r in results if r[0]], results
    # And no activation ran twice
    twice = {k: n for k, n in cluster.witness.calls.items() if n > 1}
    assert not twice, twice
    # And service is back: an invoke succeeds again
    with cluster.client(1) as c1:
        end = time.monotonic() + 40
        while True:
            r = invoke(c1, name, blocking=True)
            if r.status_code == 200 or time.monotonic() > end:
                break
            time.sleep(0.5)
        assert r.status_code == 200, r.text
    cluster.local.wait_ready()


def test_postgres_stopped_for_20_s_gives_5xx_never_401_and_service_resumes(
    cluster: Cluster,
) -> None:
    name = unique("pgdown")
    with cluster.client(0, timeout=30) as c0:
        create(c0, name)
        # When PostgreSQL is stopped for 20 s
        cluster.pg.stop()
        codes = []
        try:
            end = time.monotonic() + 20
            while time.monotonic() < end:
                r = c0.get("/api/v1/namespaces/_/actions")
                codes.append(r.status_code)
                time.sleep(0.5)
        finally:
            cluster.pg.start()
        # Then the API answered 5xx, never 401 (nor anything else)
        assert codes, codes
        assert all(code >= 500 for code in codes), codes
        # And service resumes by itself
        end = time.monotonic() + 30
        while True:
            r = c0.post(f"/api/v1/namespaces/_/actions/{name}?blocking=true&result=true")
            if r.status_code == 200 or time.monotonic() > end:
                break
            time.sleep(0.5)
        assert r.status_code == 200, r.text
        assert r.json() == {"hello": "world"}
    cluster.local.wait_ready()
