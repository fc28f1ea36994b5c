"""The sandboxes' network: a link out under the egress rules, and nothing else.

Every target is on this machine: the test's own "outside host" (a network namespace it
makes, tests/netsupport.py), the host's loopback and the host's own addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from netsupport import (
    HTTP_PORT,
    METADATA,
    NAME,
    OutsideHost,
)

from squall.sandbox.contracts import Container
from squall.sandbox.egress import EgressPolicy, parse_rules
from squall.sandbox.network import SandboxNetwork
from squall.sandbox.process import PREPARED_NETWORKS, ProcessContainerFactory

PY_CONNECT = """
import os, socket
def main(args):
    out = {"api_host": os.environ["__OW_API_HOST"]}
    for name, (host, port) in args["targets"].items():
        try:
            socket.create_connection((host, port), timeout=3).close()
            out[name] = "connected"
        except OSError as ex:
            out[name] = type(ex).__name__
    try:
        out["dns"] = socket.gethostbyname(args["name"])
    except OSError as ex:
        out["dns"] = type(ex).__name__
    return out
"""

NODE_CONNECT = """
const net = require('net');
const dns = require('dns').promises;
function attempt(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({host, port, timeout: 3000});
    s.on('connect', () => { s.destroy(); resolve('connected'); });
    s.on('timeout', () => { s.destroy(); resolve('timeout'); });
    s.on('error', (e) => resolve(e.code));
  });
}
async function main(args) {
  const out = {api_host: process.env.__OW_API_HOST};
  for (const [name, [host, port]] of Object.entries(args.targets)) {
    out[name] = await attempt(host, port);
  }
  try { out.dns = (await dns.lookup(args.name, {family: 4})).address; }
  catch (e) { out.dns = e.code; }
  return out;
}
"""


KINDS = [("python:3.11", PY_CONNECT), ("nodejs:20", NODE_CONNECT)]


@pytest.fixture
def api_server() -> Iterator[socket.socket]:
    """A server on the host's loopback standing in for the platform's API."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.listen(16)
        yield server


@pytest.fixture
async def networked(
    anyio_backend: str, tmp_path: Path, outside: OutsideHost, api_server: socket.socket
) -> AsyncIterator[ProcessContainerFactory]:
    port = api_server.getsockname()[1]
    assert outside.resolver is not None
    policy = EgressPolicy(resolvers=(ipaddress.ip_address(outside.resolver),))
    network = SandboxNetwork(policy, ("127.0.0.1", port))
    factory = ProcessContainerFactory(tmp_path / "net", f"http://127.0.0.1:{port}", network=network)
    try:
        yield factory
    finally:
        await factory.close()


async def run(container: Container, code: str, value: Any) -> dict[str, Any]:
    init = await container.initialize({"code": code}, timeout=10)
    assert init.status == 200, init.body
    answer = await container.run({"value": value}, timeout=30)
    assert answer.status == 200, answer.body
    result: dict[str, Any] = json.loads(answer.body)
    return result


def targets(outside: OutsideHost, api_port: int, gateway: str) -> dict[str, tuple[str, int]]:
    return {
        "outside": (outside.public, HTTP_PORT),
        "api": (gateway, api_port),
        "gateway_other_port": (gateway, 22),
        "loopback_api": ("127.0.0.1", api_port),
        "host_address": (outside.host_side, api_port),
        "private": (outside.private, HTTP_PORT),
        "metadata": (METADATA, HTTP_PORT),
    }


@pytest.mark.parametrize(
    ("kind", "code"), [("python:3.11", PY_CONNECT), ("nodejs:20", NODE_CONNECT)]
)
async def test_an_action_reaches_the_outside_and_the_api_but_nothing_else(
    networked: ProcessContainerFactory,
    outside: OutsideHost,
    api_server: socket.socket,
    kind: str,
    code: str,
) -> None:
    # Given a factory with the default egress rules, the API on the host's loopback and an
    # outside host that also holds a private and the metadata address
    assert networked.network is not None and networked.network.block is not None
    gateway = str(networked.network.block.gateway)
    port = api_server.getsockname()[1]
    container = await networked.create(kind, 256)
    # When the action connects to each
    result = await run(container, code, {"targets": targets(outside, port, gateway), "name": NAME})
    # Then the outside host and the API (at the address it was given) answer, the name
    # resolves through the configured resolver, and everything else is refused at once
    assert result["api_host"] == f"http://{gateway}:{port}"
    assert result["outside"] == "connected"
    assert result["api"] == "connected"
    assert result["dns"] == outside.public
    refused = "ConnectionRefusedError" if kind.startswith("python") else "ECONNREFUSED"
    unreachable = {"EHOSTUNREACH", "ENETUNREACH", "OSError", refused}
    for name in ("gateway_other_port", "loopback_api", "host_address", "private", "metadata"):
        assert result[name] in unreachable, (name, result)


@pytest.mark.parametrize(
    ("kind", "code"), [("python:3.11", PY_CONNECT), ("nodejs:20", NODE_CONNECT)]
)
async def test_a_container_without_network_reaches_nothing(
    networked: ProcessContainerFactory,
    outside: OutsideHost,
    api_server: socket.socket,
    kind: str,
    code: str,
) -> None:
    # Given a container created with network=False (a namespace whose limit is "none")
    assert networked.network is not None and networked.network.block is not None
    gateway = str(networked.network.block.gateway)
    port = api_server.getsockname()[1]
    container = await networked.create(kind, 256, network=False)
    # When it tries everything, Then nothing connects, not even the outside host
    result = await run(container, code, {"targets": targets(outside, port, gateway), "name": NAME})
    assert "connected" not in [v for k, v in result.items() if k != "api_host"], result


async def test_links_go_with_their_containers_and_the_rules_with_the_factory(
    anyio_backend: str, tmp_path: Path, outside: OutsideHost
) -> None:
    # Given a factory with a network and a container of each start path
    network = SandboxNetwork(EgressPolicy(), None)
    factory = ProcessContainerFactory(tmp_path / "net", "http://127.0.0.1:1", network=network)
    assert network.block is not None
    prefix, table = network.block.prefix, network.block.table
    try:
        node = await factory.create("nodejs:20", 256)
        python = await factory.create("python:3.13", 256, tenant="guest")
        assert len(links(prefix)) >= 2
        # When both are destroyed, Then their links go (the zygote's spares and the
        # namespaces prepared for true cold starts keep theirs)
        await node.destroy()
        await python.destroy()
        assert factory.zygote is not None
        await factory.zygote.filled()
        kept = factory.zygote.spares + PREPARED_NETWORKS
        for _ in range(200):  # the links are removed in the background: 10 s at most
            if len(links(prefix)) == kept:
                break
            await asyncio.sleep(0.05)
        assert len(links(prefix)) == kept
    finally:
        await factory.close()
    # And when the factory closes, no link and no table of it is left
    assert links(prefix) == []
    assert table not in nft_tables()


def nft_tables() -> list[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def links(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    names = [line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()]
    return [n for n in names if n.startswith(prefix)]


def test_rules_parse_and_refuse_what_is_malformed() -> None:
    rules = parse_rules("203.0.113.7, 10.1.0.0/16:5432, 198.51.100.0/24:8000-8099, [fd00::/8]:53")
    assert [str(r) for r in rules] == [
        "203.0.113.7/32",
        "10.1.0.0/16:5432",
        "198.51.100.0/24:8000-8099",
        "[fd00::/8]:53",
    ]
    for bad in ("10.0.0.0/33", "example.test", "10.0.0.1:0", "10.0.0.1:9-8", "10.0.0.1:70000"):
        with pytest.raises(Exception, match="egress rule"):
            parse_rules(bad)


PY_CHANGE_NETWORK = """
import fcntl, os, socket, struct
def main(args):
    out = {"net": os.readlink("/proc/self/ns/net")}
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()
        out["raw"] = "ok"
    except OSError as ex:
        out["raw"] = type(ex).__name__
    try:  # SIOCSIFFLAGS: take eth0 down
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"eth0", 0))
        out["down"] = "ok"
    except OSError as ex:
        out["down"] = type(ex).__name__
    return out
"""


async def prepared_ready(network: SandboxNetwork, count: int) -> None:
    for _ in range(200):  # prepared in the background: 10 s at most
        if network.prepared >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{network.prepared} prepared namespaces, not {count}")


async def test_a_true_cold_start_joins_a_prepared_namespace_it_cannot_change(
    networked: ProcessContainerFactory,
    outside: OutsideHost,
    api_server: socket.socket,
) -> None:
    # Given a factory whose network keeps namespaces prepared, all of them ready
    network = networked.network
    assert network is not None and network.block is not None
    await prepared_ready(network, PREPARED_NETWORKS)
    gateway = str(network.block.gateway)
    port = api_server.getsockname()[1]
    ready = set(links(network.block.prefix))
    # When two containers start through bubblewrap
    first = await networked.create("python:3.11", 256)
    second = await networked.create("python:3.11", 256)
    # Then each took a prepared namespace with its link (none was attached on the start's
    # path), and the pool is refilled
    taken = {networked._leases[c.id].ifname for c in (first, second)}
    assert len(taken) == 2 and taken <= ready
    await prepared_ready(network, PREPARED_NETWORKS)
    # And the first reaches what it may, and nothing else
    result = await run(
        first, PY_CONNECT, {"targets": targets(outside, port, gateway), "name": NAME}
    )
    assert result["outside"] == "connected" and result["api"] == "connected"
    refused = {"EHOSTUNREACH", "ENETUNREACH", "OSError", "ConnectionRefusedError"}
    for name in ("gateway_other_port", "loopback_api", "host_address", "private", "metadata"):
        assert result[name] in refused, (name, result)
    # And the second cannot change its network (no capability over it)
    seen = await run(second, PY_CHANGE_NETWORK, {})
    assert seen["raw"] == "PermissionError" and seen["down"] == "PermissionError", seen
    # And the two share no namespace with each other or with the host
    namespaces = {net_namespace(c.pid) for c in (first, second)}
    assert len(namespaces) == 2 and os.readlink("/proc/self/ns/net") not in namespaces
    await first.destroy()
    await second.destroy()


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def net_namespace(monitor: int) -> str:
    """The network namespace of bubblewrap's sandbox (the monitor's child)."""
    children = Path(f"/proc/{monitor}/task/{monitor}/children").read_text().split()
    pid = int(children[0]) if children else monitor
    return os.readlink(f"/proc/{pid}/ns/net")


async def test_a_true_cold_start_without_a_prepared_namespace_waits_for_its_link(
    anyio_backend: str,
    tmp_path: Path,
    outside: OutsideHost,
    api_server: socket.socket,
) -> None:
    # Given a factory whose network prepares no namespace ahead (most containers of its
    # invoker have none), so a container's link is attached on its start's path
    port = api_server.getsockname()[1]
    assert outside.resolver is not None
    policy = EgressPolicy(resolvers=(ipaddress.ip_address(outside.resolver),))
    network = SandboxNetwork(policy, ("127.0.0.1", port))
    factory = ProcessContainerFactory(
        tmp_path / "held", f"http://127.0.0.1:{port}", network=network, network_default=False
    )
    try:
        assert network.prepared == 0 and network.block is not None
        # When a container with a network starts through bubblewrap
        container = await factory.create("python:3.11", 256, network=True)
        # Then bubblewrap was held on its block pipe until the link was attached
        assert "--block-fd" in command_line(container.pid)
        assert container.id in factory._leases
        # And the runtime found its link there from its first moment: the API answers
        gateway = str(network.block.gateway)
        result = await run(
            container, PY_CONNECT, {"targets": {"api": (gateway, port)}, "name": NAME}
        )
        assert result["api"] == "connected", result
        await container.destroy()
    finally:
        await factory.close()
