"""The API gateway in a cluster: a route created through one controller is served by
every controller at once, is gone from all of them when deleted through another, and
survives a controller's restart (it lives in PostgreSQL); the ``openwhisk`` npm client's
``routes`` and ``aio rt:api:*`` work against a cluster controller as against standalone."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from _required import unavailable
from _standalone import clean_env
from clustersupport import Cluster

COMPAT = Path(__file__).resolve().parents[1] / "compat"
sys.path.insert(0, str(COMPAT))  # aiocli lives with the other client tests

from aiocli import Aio, install  # noqa: E402

pytestmark = pytest.mark.cluster

MGMT = "/api/v1/web/whisk.system/apimgmt"
ECHO_HTTP = "function main(args) { return {statusCode: 200, body: args}; }"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def web_action(client: httpx.Client, name: str) -> None:
    body = {
        "exec": {"kind": "nodejs:20", "code": ECHO_HTTP},
        "annotations": [{"key": "web-export", "value": True}],
    }
    r = client.put(f"/api/v1/namespaces/_/actions/{name}?overwrite=true", json=body)
    assert r.status_code == 200, r.text


def create_route(
    client: httpx.Client, base: str, relpath: str, verb: str, action: str
) -> dict[str, Any]:
    """``routes.create`` as the npm client sends it, with the http response type."""
    apidoc = {
        "namespace": "_",
        "gatewayBasePath": base,
        "gatewayPath": relpath,
        "gatewayMethod": verb,
        "id": f"API:_:{base}",
        "action": {
            "name": action,
            "namespace": "_",
            "backendMethod": "GET",
            "backendUrl": f"{client.base_url}/api/v1/web/_/default/{action}.http",
            "authkey": "unused",
        },
        "pathParameters": [
            {"name": "id", "in": "path", "description": "", "required": True, "type": "string"}
        ],
    }
    r = client.post(f"{MGMT}/createApi", json={"apidoc": apidoc}, params={"responsetype": "http"})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def test_a_route_created_through_one_controller_is_served_by_every_one(
    cluster: Cluster,
) -> None:
    name, base = unique("gw"), "/" + unique("shop")
    with cluster.client(0) as c0, cluster.client(1) as c1:
        # Given a web action and a route to it with a path parameter, through controller 0
        web_action(c0, name)
        created = create_route(c0, base, "/items/{id}", "get", name)
        second = create_route(c0, base, "/items/{id}", "post", name)
        path = urlsplit(created["gwApiUrl"]).path
        # When the route is called through either controller at once
        for client in (c0, c1):
            r = client.get(f"{path}/items/7", params={"q": "x"})
            # Then it runs the action with the path parameter's path
            assert r.status_code == 200, r.text
            assert (r.json()["__ow_path"], r.json()["q"]) == (f"{base}/items/7", "x")
            r = client.post(f"{path}/items/8", json={"n": 8})
            assert (r.status_code, r.json()["n"], r.json()["__ow_method"]) == (200, 8, "post")
        # And controller 1 lists it with the swagger document controller 0 answered
        r = c1.get(f"{MGMT}/getApi", params={"basepath": base})
        assert [a["value"]["apidoc"] for a in r.json()["apis"]] == [second["apidoc"]]
        assert sorted(second["apidoc"]["paths"]["/items/{id}"]) == ["get", "post"]

        # When controller 0 is restarted, the route is still served by it (stored in PG)
        cluster.local.restart("controller0")
        cluster.local.wait_ready()
        r = c0.get(f"{path}/items/9")
        assert (r.status_code, r.json()["__ow_path"]) == (200, f"{base}/items/9")

        # When it is deleted through controller 1, neither controller serves it any more
        r = c1.delete(f"{MGMT}/deleteApi", params={"basepath": base})
        assert (r.status_code, r.json()) == (200, {})
        for client in (c0, c1):
            assert client.get(f"{path}/items/7").status_code == 404


def test_endpoints_added_at_once_through_both_controllers_are_all_kept(
    cluster: Cluster,
) -> None:
    # Given one API, and 12 endpoints added to it at once, alternately through each
    # controller (each a read-modify-write of the one stored document)
    name, base = unique("gw-race"), "/" + unique("race")
    with cluster.client(0) as c0, cluster.client(1) as c1:
        web_action(c0, name)
        create_route(c0, base, "/first/{id}", "get", name)

        def add(n: int) -> int:
            client = (c0, c1)[n % 2]
            return len(create_route(client, base, f"/p{n}/{{id}}", "get", name)["apidoc"]["paths"])

        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            sizes = list(pool.map(add, range(12)))
        # Then every one of them is in the API: a lost race started over, it lost nothing
        assert all(2 <= size <= 13 for size in sizes), sizes
        r = c1.get(f"{MGMT}/getApi", params={"basepath": base})
        paths = r.json()["apis"][0]["value"]["apidoc"]["paths"]
        assert sorted(paths) == sorted(["/first/{id}", *(f"/p{n}/{{id}}" for n in range(12))])
        r = c0.delete(f"{MGMT}/deleteApi", params={"basepath": base})
        assert r.status_code == 200, r.text


def test_the_npm_client_routes_against_a_cluster_controller(cluster: Cluster) -> None:
    # Given the npm client pointed at controller 1 (the gateway URLs it is answered name
    # the cluster's API host, which the local cluster sets to controller 0)
    node = shutil.which("node")
    if node is None or not (COMPAT / "node_modules" / "openwhisk").exists():
        unavailable("node and the openwhisk client (cd tests/compat && npm install) are needed")
    assert node is not None
    env = clean_env(
        {
            "SQUALL_APIHOST": cluster.local.controllers[1].url,
            "SQUALL_AUTH": cluster.local.auth,
            "SQUALL_PREFIX": uuid.uuid4().hex[:8],
        }
    )
    # When it runs the routes script (create, list, get, call, delete)
    done = subprocess.run(
        [node, str(COMPAT / "routes.js")],
        cwd=COMPAT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"routes.js failed:\n{done.stderr}\n{cluster.logs()}"
    seen = json.loads(done.stdout)
    # Then every step answered as against standalone
    assert seen["gotIsbn"]["status"] == 200, seen["gotIsbn"]
    assert seen["gotIsbn"]["body"]["__ow_path"] == f"{seen['basepath']}/books/978-0596517748"
    assert (seen["posted"]["status"], seen["posted"]["body"]["title"]) == (200, "Dune")
    assert seen["world"]["body"] == {"payload": "Hello Squall"}
    assert [a["value"]["apidoc"]["basePath"] for a in seen["got"]["apis"]] == [seen["basepath"]]
    assert seen["deleted"] == {} and seen["getAfterStatus"] == 404
    assert seen["listedAfter"] == {"apis": []}


@dataclass
class Controller:
    """A cluster's controller as ``aio`` is pointed at it (``aiocli.Server``)."""

    cluster: Cluster
    index: int

    @property
    def api_host(self) -> str:
        return self.cluster.local.controllers[self.index].url

    @property
    def auth(self) -> str:
        return self.cluster.local.auth

    @property
    def namespace(self) -> str:
        return "guest"

    def log(self) -> str:
        return self.cluster.logs()


def test_aio_api_commands_against_a_cluster_controller(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Given aio pointed at controller 1, and a web action
    home = tmp_path_factory.mktemp("aio-cluster")
    (home / "echo.js").write_text(ECHO_HTTP + "\n")
    aio = Aio(install(), Controller(cluster, 1), home)
    base = "/" + unique("aiocluster")
    aio.run("rt:action:create", "aioClusterBooks", "echo.js", "--web", "true")
    # When GET and POST routes with a path parameter are created
    for verb in ("get", "post"):
        made = aio.run("rt:api:create", base, "/books/{isbn}", verb, "aioClusterBooks",
                       "--response-type=http")  # fmt: skip
    url = made.stdout.strip()
    assert url.endswith(f"{base}/books/{{isbn}}"), made.stdout
    # Then list and get show both verbs
    listed = [line.split() for line in aio.run("rt:api:list").stdout.splitlines()]
    assert sorted(row[1] for row in listed if row and row[-1] == url) == ["get", "post"]
    swagger = json.loads(aio.run("rt:api:get", base).stdout)
    assert sorted(swagger["paths"]["/books/{isbn}"]) == ["get", "post"]
    # And both controllers serve them, GET and POST, with the path parameter's path
    path = urlsplit(url).path.replace("{isbn}", "42")
    for member in cluster.local.controllers:
        r = httpx.get(member.url + path, trust_env=False)
        assert (r.status_code, r.json()["__ow_path"]) == (200, f"{base}/books/42"), r.text
        r = httpx.post(member.url + path, json={"title": "Dune"}, trust_env=False)
        assert (r.status_code, r.json()["title"]) == (200, "Dune"), r.text
    # When the API is deleted, no controller serves it
    aio.run("rt:api:delete", base)
    for member in cluster.local.controllers:
        assert httpx.get(member.url + path, trust_env=False).status_code == 404
    aio.run("rt:action:delete", "aioClusterBooks")
