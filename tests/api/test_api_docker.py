"""Custom-image (blackbox) actions through the API, run by the invoker's Docker backend.

The image is tests/fixtures/tiny.c alone in a ``FROM scratch`` image (built by
tests/dockersupport.py): nothing of Squall's is inside it, as with any user's image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from _required import unavailable
from apisupport import BASE_URL, NS
from dockersupport import docker_ready, tiny_image

from squall.cli.standalone import Standalone
from squall.config import Settings
from squall.sandbox.docker import DockerContainerFactory

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]


@pytest.fixture(scope="module")
def image() -> str:
    problem = docker_ready()
    if problem is not None:
        unavailable(f"Docker backend: {problem}")
    return tiny_image()


async def test_a_custom_image_runs_as_an_action(
    client: httpx.AsyncClient, unique: Unique, image: str
) -> None:
    # Given a blackbox action of a custom image, without code
    name = unique("tiny")
    exec_ = {"kind": "blackbox", "image": image}
    r = await client.put(f"{NS}/actions/{name}", json={"exec": exec_})
    assert r.status_code == 200, r.text
    # And it shows as OpenWhisk shows it: no "code" member
    assert r.json()["exec"] == {"kind": "blackbox", "image": image, "binary": False}
    # When it is invoked twice (cold, then warm)
    answers = []
    for n in (1, 2):
        r = await client.post(f"{NS}/actions/{name}", json={"n": n}, params={"blocking": "true"})
        assert r.status_code == 200, r.text
        answers.append(r.json())
    # Then the image answered /run with what OpenWhisk sends, and its output is the log
    for n, record in zip((1, 2), answers, strict=True):
        echo = record["response"]["result"]["echo"]
        assert echo["value"] == {"n": n}
        assert echo["activation_id"] == record["activationId"]
        # And, as in OpenWhisk, /init had no "code" to replace the image's own with
        assert record["response"]["result"]["code"] is None
        assert [line.endswith("stdout: tiny ran") for line in record["logs"]] == [True]
    # And the second reused the warm container (only a cold start has an initTime)
    init_times = [{a["key"] for a in r["annotations"]} >= {"initTime"} for r in answers]
    assert init_times == [True, False]


async def test_a_custom_image_with_code_gets_it_at_init(
    client: httpx.AsyncClient, unique: Unique, image: str
) -> None:
    # Given a blackbox action of a custom image with code (``wsk action create x f --docker``)
    name = unique("tinycode")
    code = 'printf "%s\\n" "hi"\n'
    exec_ = {"kind": "blackbox", "image": image, "code": code, "main": "start"}
    r = await client.put(f"{NS}/actions/{name}", json={"exec": exec_})
    assert r.status_code == 200, r.text
    assert r.json()["exec"] == {**exec_, "binary": False}
    # When it is invoked
    r = await client.post(f"{NS}/actions/{name}", json={}, params={"blocking": "true"})
    # Then the image got the code, unchanged, at /init
    assert r.status_code == 200, r.text
    assert r.json()["response"]["result"]["code"] == code


async def test_a_missing_image_is_a_developer_error_naming_it(
    client: httpx.AsyncClient, unique: Unique, image: str
) -> None:
    # Given a blackbox action of an image the invoker's dockerd does not have
    name = unique("absent")
    exec_ = {"kind": "blackbox", "image": "squall-test/absent:1"}
    r = await client.put(f"{NS}/actions/{name}", json={"exec": exec_})
    assert r.status_code == 200, r.text
    # When it is invoked
    r = await client.post(f"{NS}/actions/{name}", json={}, params={"blocking": "true"})
    # Then OpenWhisk's image pull error, as a developer error
    assert r.status_code == 502, r.text
    response = r.json()["response"]
    assert response["status"] == "action developer error"
    assert response["result"] == {"error": "Failed to pull container image 'squall-test/absent:1'."}


CODE = {
    "nodejs:20": "function main(p) { console.log('nodejs in docker'); return {hi: p.name}; }",
    "python:3.11": "def main(p):\n    print('python in docker')\n    return {'hi': p['name']}\n",
}


async def test_the_built_in_kinds_run_on_docker_when_the_operator_chooses_it(
    tmp_path: Path, image: str
) -> None:
    # Given a standalone platform whose invoker runs the built-in kinds on Docker
    settings = Settings(home=tmp_path / "home", container_backend="docker", stem_cells="")
    platform = await Standalone.start(settings)
    try:
        docker = platform.factory.factories[0]
        assert isinstance(docker, DockerContainerFactory)
        user, _, key = platform.guest_auth.partition(":")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=platform.app), base_url=BASE_URL, auth=(user, key)
        ) as client:
            for kind, code in CODE.items():
                # When an action of the kind is created and invoked
                name = f"hi-{kind.partition(':')[0]}"
                exec_ = {"kind": kind, "code": code}
                r = await client.put(f"{NS}/actions/{name}", json={"exec": exec_})
                assert r.status_code == 200, r.text
                r = await client.post(
                    f"{NS}/actions/{name}", json={"name": "you"}, params={"blocking": "true"}
                )
                # Then it answers, and its warm container is a Docker container
                assert r.status_code == 200, r.text
                record = r.json()
                assert record["response"]["result"] == {"hi": "you"}
                assert record["logs"][0].endswith(f"{kind.partition(':')[0]} in docker")
                assert kind in [c.kind for c in docker.containers]
    finally:
        await platform.close()
    # And closing the platform removed them
    assert docker.containers == []
