"""The compose file (deploy/compose/) brings up a whole cluster from the image built here
(deploy/docker/build.sh): PostgreSQL, NATS JetStream, two controllers, two invokers and
nginx with TLS; the official ``openwhisk`` npm client then works against it through nginx.

Slow the first time (it builds the image: a debootstrap, the deps image, then Squall's
thin last layer; all cached, build.sh rebuilding only what the changed inputs make, so a
change in squall/ costs seconds); the image's tag is this checkout's own; the compose
project is the test's own (a unique name, free ports), removed with its volumes at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _required import unavailable
from dockersupport import docker_ready, platform_test_tag, prune_platform_test_images

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "deploy" / "compose" / "docker-compose.yml"
COMPAT = REPO / "tests" / "compat"
IMAGE = platform_test_tag()  # one per checkout: two checkouts test at once
PORTS = (
    "SQUALL_PG_PORT",
    "SQUALL_NATS_PORT",
    "SQUALL_NATS_MONITOR_PORT",
    "SQUALL_CONTROLLER0_PORT",
    "SQUALL_CONTROLLER1_PORT",
    "SQUALL_INVOKER0_PORT",
    "SQUALL_INVOKER1_PORT",
    "SQUALL_HTTPS_PORT",
)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Compose:
    def __init__(self, binary: str, project: str, env: dict[str, str]) -> None:
        self.binary, self.project, self.env = binary, project, env

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, "-f", str(COMPOSE_FILE), "-p", self.project, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def compose_cluster() -> Iterator[tuple[str, str]]:
    problem = docker_ready()
    if problem is not None:
        unavailable(f"Docker: {problem}")
    binary = shutil.which("docker-compose")
    if binary is None:
        unavailable("docker-compose is not installed: apt-get install docker-compose")
    prune_platform_test_images()
    built = subprocess.run(
        [str(REPO / "deploy" / "docker" / "build.sh"), IMAGE],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    ports = dict(zip(PORTS, map(str, free_ports(len(PORTS))), strict=True))
    env = {**os.environ, **ports, "SQUALL_IMAGE": IMAGE}
    compose = Compose(binary, f"squall-test-{uuid.uuid4().hex[:8]}", env)
    url = f"https://127.0.0.1:{ports['SQUALL_HTTPS_PORT']}"
    try:
        up = compose("up", "-d", timeout=600)
        assert up.returncode == 0, up.stderr
        deadline = time.monotonic() + 180
        while True:  # bounded: until nginx passes a request to a controller
            try:
                if httpx.get(f"{url}/api/v1", verify=False, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, compose("logs", "--tail", "50").stdout
            time.sleep(1)
        created = compose("exec", "-T", "controller0", "squall", "admin", "user", "create", "guest")
        assert created.returncode == 0, created.stderr
        auth = created.stdout.strip().splitlines()[-1]
        yield url, auth
    finally:
        compose("down", "-v", "--timeout", "30", timeout=600)


def test_the_openwhisk_client_works_against_the_compose_cluster(
    compose_cluster: tuple[str, str],
) -> None:
    url, auth = compose_cluster
    node = shutil.which("node")
    assert node is not None, "node is needed"
    assert (COMPAT / "node_modules" / "openwhisk").is_dir(), "run ./dev test (npm install)"
    # When the official client, pointed at the cluster's nginx, creates and invokes
    # actions, fetches a web action and uploads 11 MB of code
    done = subprocess.run(
        [node, str(COMPAT / "https_client.js")],
        cwd=COMPAT,
        env={
            "PATH": "/usr/bin:/bin",
            "SQUALL_APIHOST": url,
            "SQUALL_AUTH": auth,
            "SQUALL_PREFIX": uuid.uuid4().hex[:8],
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # Then it works as against one server, the action running in an invoker's sandbox
    assert seen["invoked"] == {"status": "success", "result": {"greeting": "Hello nginx"}}
    assert seen["fetched"]["status"] == 200
    assert seen["fetched"]["body"]["headers"]["x-forwarded-proto"] == "https"
    assert seen["big"]["result"] == {"big": True}
