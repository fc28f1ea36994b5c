"""An "outside host" for egress tests: a network namespace this test run creates itself.

:func:`outside_host` makes a network namespace joined to the host by a veth pair, with
addresses the tests chose — a documentation address (a free /30 of TEST-NET-3,
203.0.113.0/24, so that several test runs on one machine do not clash) that sandboxes may
reach, and on the same host a private-range address and the cloud metadata address,
routed there, which the egress rules must refuse. Inside it run an HTTP server (which
answers with the caller's address) and, when dnsmasq is installed, a resolver that knows
the name ``outside.test``. Nothing else is ever a target.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TEST_NET = ipaddress.IPv4Network("203.0.113.0/24")
METADATA = "169.254.169.254"
NAME = "outside.test"
HTTP_PORT = 8080

_SERVER = textwrap.dedent(
    """
    import http.server, json, sys
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"outside": True, "from": self.client_address[0]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
    """
)


CLONE_NEWNET = 0x40000000


def listen_in(netns: str, address: str, port: int = 0) -> socket.socket:
    """A TCP socket listening on ``address`` inside ``netns`` (an ``ip netns`` name): it
    is created by a thread that enters the namespace (``setns`` acts on that thread
    only), and keeps belonging to it when used from this process's other threads."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        with open(f"/run/netns/{netns}") as theirs, open("/proc/thread-self/ns/net") as own:
            if libc.setns(theirs.fileno(), CLONE_NEWNET) != 0:
                made.append(OSError(ctypes.get_errno(), "setns"))
                return
            try:
                made.append(socket.create_server((address, port)))
            except OSError as ex:
                made.append(ex)
            finally:
                libc.setns(own.fileno(), CLONE_NEWNET)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    result = made[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _ip(*args: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, timeout=10)


def missing() -> str | None:
    """Why outside hosts cannot be made here, None when they can."""
    if os.geteuid() != 0:
        return "network namespaces for the outside host need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    return None


def dnsmasq() -> str | None:
    return shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if os.access("/usr/sbin/dnsmasq", os.X_OK) else None
    )


@dataclass
class OutsideHost:
    netns: str
    host_side: str  # the host's end of the link: one of the host's own addresses
    public: str  # the outside host's reachable address
    private: str  # a private-range address of it, which sandboxes must not reach
    resolver: str | None  # the address of its DNS server, when dnsmasq runs

    @property
    def url(self) -> str:
        return f"http://{self.public}:{HTTP_PORT}/"


def _free_link() -> tuple[int, ipaddress.IPv4Network]:
    """A /30 of TEST-NET-3 that no address of this host is in (another run's outside
    host, or one a killed run left), and its index."""
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    used = {ipaddress.IPv4Interface(w).ip for w in shown.split() if "/" in w and "." in w}
    links = list(enumerate(TEST_NET.subnets(new_prefix=30)))[1:]
    random.shuffle(links)
    for index, link in links:
        if not any(address in link for address in used):
            return index, link
    raise RuntimeError("every /30 of 203.0.113.0/24 is in use on this host")


def _wait_listening(netns: str, port: int, proto: str = "tcp") -> None:
    deadline = time.monotonic() + 10
    flag = "-ltn" if proto == "tcp" else "-lun"
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["ip", "netns", "exec", netns, "ss", flag],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
        if f":{port} " in out:
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {proto} port {port} in {netns}")


@contextlib.contextmanager
def outside_host(tmp: Path) -> Iterator[OutsideHost]:
    """The outside host, removed (namespace, links, routes, processes) on exit."""
    tag = secrets.token_hex(3)
    netns, host_if = f"sqtest-{tag}", f"sqt{tag}"
    index, link = _free_link()
    host_side, public = (str(a) for a in link.hosts())
    private = f"10.77.{index}.2"
    processes: list[subprocess.Popen[bytes]] = []
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=10)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("addr", "add", f"{host_side}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for address in (private, METADATA):
            # Routed to the outside host, so only the egress rules stand in the way
            # ("replace": the metadata route of another run's outside host moves here).
            _ip("route", "replace", f"{address}/32", "via", public)
        _ip("addr", "add", f"{public}/30", "dev", "eth0", netns=netns)
        for address in (private, METADATA):
            _ip("addr", "add", f"{address}/32", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("route", "add", "default", "via", host_side, netns=netns)
        server = tmp / "outside_server.py"
        server.write_text(_SERVER)
        processes.append(
            subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, str(server), str(HTTP_PORT)]
            )
        )
        _wait_listening(netns, HTTP_PORT)
        resolver = None
        binary = dnsmasq()
        if binary is not None:
            processes.append(
                subprocess.Popen(
                    [
                        "ip", "netns", "exec", netns, binary, "--keep-in-foreground",
                        "--no-resolv", "--no-hosts", "--bind-interfaces",
                        f"--listen-address={public}", f"--address=/{NAME}/{public}",
                        f"--pid-file={tmp / 'dnsmasq.pid'}", "--user=root",
                    ]
                )
            )  # fmt: skip
            _wait_listening(netns, 53, "udp")
            resolver = public
        yield OutsideHost(netns, host_side, public, private, resolver)
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
        for address in (private, METADATA):  # only ours (via our outside host)
            route = ["ip", "route", "del", f"{address}/32", "via", public]
            subprocess.run(route, capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


# A Node.js action that tells a Witness its activation id when it starts (POST
# ``params.witness/<id>``, with its ``__OW_API_HOST``: the gateway of the invoker that runs
# it), then sleeps ``params.sleepMs``, then answers ``{id}``.
WITNESS_JS = """
const http = require('http');
function main(params) {
  const id = process.env.__OW_ACTIVATION_ID;
  return new Promise((resolve) => {
    const headers = {'x-api-host': process.env.__OW_API_HOST || ''};
    const req = http.request(params.witness + '/' + id, {method: 'POST', headers}, (res) => {
      res.resume();
      setTimeout(() => resolve({id: id}), params.sleepMs || 0);
    });
    req.on('error', (e) => resolve({error: String(e)}));
    req.end();
  });
}
"""


class Witness:
    """Counts ``POST /<activation id>`` calls: one per run of an action; ``via`` keeps the
    ``x-api-host`` header of each run (the ``__OW_API_HOST`` of the invoker that ran it).

    It listens on the test's own outside host: the only kind of place a sandbox may
    connect to."""

    def __init__(self, host: OutsideHost) -> None:
        self.calls: Counter[str] = Counter()
        self.via: dict[str, list[str]] = {}
        lock = threading.Lock()
        calls, via = self.calls, self.via

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                activation_id = self.path.strip("/")
                with lock:
                    calls[activation_id] += 1
                    via.setdefault(activation_id, []).append(self.headers.get("x-api-host", ""))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.address = host.public
        self._server = ThreadingHTTPServer((host.public, 0), Handler, bind_and_activate=False)
        self._server.socket.close()
        self._server.socket = listen_in(host.netns, host.public)
        self.port = int(self._server.socket.getsockname()[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
