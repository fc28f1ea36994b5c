"""Custom-image (blackbox) actions through the API, run by the invoker's Docker backend.

The image is tests/fixtures/tiny.c alone in a ``FROM scratch`` image (built by
tests/dockersupport.py): nothing of Squall's is inside it, as with any user's image.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from _required import unavailable
from apisupport import NS
from dockersupport import docker_ready, tiny_image

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
        assert [line.endswith("stdout: tiny ran") for line in record["logs"]] == [True]
    # And the second reused the warm container (only a cold start has an initTime)
    init_times = [{a["key"] for a in r["annotations"]} >= {"initTime"} for r in answers]
    assert init_times == [True, False]


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
