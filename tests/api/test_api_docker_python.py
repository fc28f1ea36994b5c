"""Every Python kind on the Docker backend (``SQUALL_CONTAINER_BACKEND=docker``): python:3.11
from bookworm's python3, python:3.13 (the default Python kind) from the runtimes cache's
CPython 3.13 carried into its image (squall/sandbox/imagetree.py).

One standalone platform whose invoker runs the built-in kinds on a real dockerd; the same
actions run on each kind, and python:3.13 must answer as python:3.11 does: results, logs,
the environment (``__OW_API_KEY`` included), errors and limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _required import unavailable
from apisupport import BASE_URL, NS
from dockersupport import docker_ready

from squall.cli.standalone import Standalone
from squall.config import Settings
from squall.entities.activation import MEMORY_EXHAUSTED, timed_out_message
from squall.sandbox.docker import DockerContainerFactory
from squall.sandbox.images import ensure_images

pytestmark = pytest.mark.anyio

ENV = """\
import os, sys
def main(p):
    print('python', sys.version_info[1], 'in docker')
    print('to stderr', file=sys.stderr)
    if p.get('fail'):
        raise ValueError('no ' + p['fail'])
    key = os.environ.get('__OW_API_KEY', '')
    return {
        'hi': p['name'],
        'version': '%d.%d' % sys.version_info[:2],
        'executable': sys.executable,
        'namespace': os.environ['__OW_NAMESPACE'],
        'action': os.environ['__OW_ACTION_NAME'],
        'api_host': bool(os.environ.get('__OW_API_HOST')),
        'key_parts': len(key.split(':')) if key else 0,
        'activation': os.environ['__OW_ACTIVATION_ID'],
    }
"""
HOG = "def main(p):\n    hog = b'x' * (p['mb'] << 20)\n    return {'len': len(hog)}\n"
#: kind → (the kind its actions run as, the interpreter inside its image)
KINDS = {
    "python:3.11": ("python:3.11", "/usr/bin/python3"),
    "python:3.13": ("python:3.13", "/opt/squall/python-3.13/usr/bin/python3.13"),
    "python:default": ("python:3.13", "/opt/squall/python-3.13/usr/bin/python3.13"),
}
WANTS_KEY = [{"key": "provide-api-key", "value": True}]


@pytest.fixture(scope="module")
def images() -> None:
    problem = docker_ready()
    if problem is not None:
        unavailable(f"Docker backend: {problem}")
    # python:3.13's image needs the runtimes cache's CPython 3.13: built (or found) here
    # even where docker_ready left it out, so its absence fails (CI) instead of hiding.
    ensure_images(("python:3.11", "python:3.13"))


# One platform for the module: its tests name their actions apart (by test and kind), and
# a Docker platform's start and close (its containers removed) cost seconds each.
@pytest.fixture(scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, images: None
) -> AsyncIterator[Standalone]:
    home = tmp_path_factory.mktemp("docker-python") / "home"
    settings = Settings(home=home, container_backend="docker", stem_cells="")
    started = await Standalone.start(settings)
    try:
        yield started
    finally:
        await started.close()


@pytest.fixture
async def client(platform: Standalone) -> AsyncIterator[httpx.AsyncClient]:
    user, _, key = platform.guest_auth.partition(":")
    transport = httpx.ASGITransport(app=platform.app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE_URL, auth=(user, key), timeout=120
    ) as made:
        yield made


def docker_of(platform: Standalone) -> DockerContainerFactory:
    docker = platform.factory.factories[0]
    assert isinstance(docker, DockerContainerFactory)
    return docker


async def create(
    client: httpx.AsyncClient, name: str, kind: str, code: str, **extra: Any
) -> dict[str, Any]:
    r = await client.put(
        f"{NS}/actions/{name}", json={"exec": {"kind": kind, "code": code}, **extra}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def invoke(client: httpx.AsyncClient, name: str, params: dict[str, Any]) -> httpx.Response:
    return await client.post(f"{NS}/actions/{name}", json=params, params={"blocking": "true"})


async def test_every_python_kind_runs_in_a_docker_container_alike(
    platform: Standalone, client: httpx.AsyncClient
) -> None:
    docker = docker_of(platform)
    records: dict[str, dict[str, Any]] = {}
    for kind, (runs_as, executable) in KINDS.items():
        # Given an action of the kind that wants its API key
        name = "env-" + kind.replace(":", "-").replace(".", "")
        created = await create(client, name, kind, ENV, annotations=WANTS_KEY)
        assert created["exec"]["kind"] == runs_as  # python:default is python:3.13 here
        # When it is invoked
        r = await invoke(client, name, {"name": "you"})
        # Then it ran in a Docker container of its kind, on the image's interpreter
        assert r.status_code == 200, r.text
        record = r.json()
        result = record["response"]["result"]
        assert runs_as in [c.kind for c in docker.containers]
        assert result["executable"] == executable
        assert result["version"] == runs_as.partition(":")[2]
        # With OpenWhisk's environment: its names, the API host and a uuid:key API key
        assert result["namespace"] == record["namespace"]
        assert result["action"] == f"/{record['namespace']}/{name}"
        assert result["activation"] == record["activationId"]
        assert (result["api_host"], result["key_parts"]) == (True, 2)
        # And its logs are both streams' lines
        assert sorted(line.split(" ", 2)[1:] for line in record["logs"]) == [
            ["stderr:", "to stderr"],
            ["stdout:", f"python {result['version'].partition('.')[2]} in docker"],
        ]
        records[kind] = record
    # And python:3.13 answered as python:3.11 did, but for its interpreter and names
    differ = {"executable", "version", "action", "activation"}
    alike = {
        k: v for k, v in records["python:3.11"]["response"]["result"].items() if k not in differ
    }
    for kind in ("python:3.13", "python:default"):
        got = records[kind]["response"]["result"]
        assert {k: v for k, v in got.items() if k not in differ} == alike
        assert records[kind]["response"]["status"] == "success"


async def test_errors_and_limits_of_python_313_are_python_311s(
    platform: Standalone, client: httpx.AsyncClient
) -> None:
    answers: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for kind in ("python:3.11", "python:3.13"):
        suffix = kind.replace(":", "-").replace(".", "")
        await create(client, f"fail-{suffix}", kind, ENV)
        await create(client, f"hog-{suffix}", kind, HOG, limits={"memory": 128})
        # When one raises, one fills more than its memory limit, one passes its time limit
        failed = await invoke(client, f"fail-{suffix}", {"name": "x", "fail": "luck"})
        hogged = await invoke(client, f"hog-{suffix}", {"mb": 400})
        sleep = "import time\ndef main(p):\n    time.sleep(30)\n    return {}\n"
        await create(client, f"slow-{suffix}", kind, sleep, limits={"timeout": 500})
        slow = await invoke(client, f"slow-{suffix}", {})
        answers[kind] = [(r.status_code, r.json()["response"]) for r in (failed, hogged, slow)]
    # Then each ends as OpenWhisk's Python runtime does, the same on both kinds
    assert answers["python:3.13"] == answers["python:3.11"]
    developer = {"status": "action developer error", "success": False}
    assert answers["python:3.13"] == [
        (
            502,
            {
                "status": "application error",
                "success": False,
                "result": {"error": "no luck"},
                "size": 19,
            },
        ),
        (502, developer | {"result": {"error": MEMORY_EXHAUSTED}}),
        (502, developer | {"result": {"error": timed_out_message(500, init=False)}}),
    ]
