"""An "outside host" for egress tests: a network namespace this test run creates itself.

:class:`OutsideHost` makes a network namespace joined to the host by a veth pair, with
addresses the tests chose — a documentation address (TEST-NET-3, 203.0.113.0/24) that
sandboxes may reach, and on the same host a private-range address and the cloud metadata
address, routed there, which the egress rules must refuse. Inside it run an HTTP server
(which answers with the caller's address) and, when dnsmasq is installed, a resolver
that knows the name ``outside.test``. Nothing else is ever a target.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
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

HOST_SIDE = "203.0.113.1"
PUBLIC = "203.0.113.2"
PRIVATE = "10.77.0.2"
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
    url: str  # http://203.0.113.2:8080/
    resolver: str | None  # the address of its DNS server, when dnsmasq runs


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
    processes: list[subprocess.Popen[bytes]] = []
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=10)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("addr", "add", f"{HOST_SIDE}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for address in (PRIVATE, METADATA):
            # Routed to the outside host, so only the egress rules stand in the way.
            _ip("route", "add", f"{address}/32", "via", PUBLIC)
        _ip("addr", "add", f"{PUBLIC}/24", "dev", "eth0", netns=netns)
        for address in (PRIVATE, METADATA):
            _ip("addr", "add", f"{address}/32", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("route", "add", "default", "via", HOST_SIDE, netns=netns)
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
                        f"--listen-address={PUBLIC}", f"--address=/{NAME}/{PUBLIC}",
                        f"--pid-file={tmp / 'dnsmasq.pid'}", "--user=root",
                    ]
                )
            )  # fmt: skip
            _wait_listening(netns, 53, "udp")
            resolver = PUBLIC
        yield OutsideHost(netns, f"http://{PUBLIC}:{HTTP_PORT}/", resolver)
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
        for address in (PRIVATE, METADATA):
            subprocess.run(
                ["ip", "route", "del", f"{address}/32"], capture_output=True, check=False
            )
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


# A Node.js action that tells a Witness its activation id when it starts (POST
# ``params.witness/<id>``), then sleeps ``params.sleepMs``, then answers ``{id}``.
WITNESS_JS = """
const http = require('http');
function main(params) {
  const id = process.env.__OW_ACTIVATION_ID;
  return new Promise((resolve) => {
    const req = http.request(params.witness + '/' + id, {method: 'POST'}, (res) => {
      res.resume();
      setTimeout(() => resolve({id: id}), params.sleepMs || 0);
    });
    req.on('error', (e) => resolve({error: String(e)}));
    req.end();
  });
}
"""


class Witness:
    """Counts ``POST /<activation id>`` calls: one per run of an action.

    It listens on the test's own outside host (tests/netsupport.py): the only kind of
    place a sandbox may connect to."""

    def __init__(self, host: OutsideHost) -> None:
        self.calls: Counter[str] = Counter()
        lock = threading.Lock()
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with lock:
                    calls[self.path.strip("/")] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer((PUBLIC, 0), Handler, bind_and_activate=False)
        self._server.socket.close()
        self._server.socket = listen_in(host.netns, PUBLIC)
        self.port = int(self._server.socket.getsockname()[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{PUBLIC}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
