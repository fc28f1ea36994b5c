"""``squall cluster up`` as a user runs it: one command to a working cluster, and Ctrl-C
(SIGINT) or SIGTERM stops every member; a member killed with SIGKILL is started again (and
counted in the controllers' /metrics); a port another server holds is refused, not
reported ready."""

from __future__ import annotations

import http.server
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from _standalone import free_port, poll
from clustersupport import cluster_up, shared_services

pytestmark = pytest.mark.cluster


DESCRIBED = re.compile(r"^(\w+): http://\S+ \(pid (\d+)\)$", re.M)


def member_pids(output: str) -> list[int]:
    """The pids of the members as cluster up listed them when it became ready."""
    return [int(m.group(2)) for m in DESCRIBED.finditer(output)]


def test_cluster_up_serves_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    with shared_services() as (store, bus):
        out_path = tmp_path / "up.out"
        # Given `squall cluster up` with one controller and two invokers
        process = cluster_up(tmp_path / "home", out_path, store, bus, "--controllers", "1",
                             "--invokers", "2", "--port", "0", quick_offline=False)  # fmt: skip
        try:
            deadline = time.monotonic() + 90
            while "AUTH=" not in out_path.read_text():
                assert process.poll() is None, out_path.read_text()
                assert time.monotonic() < deadline, out_path.read_text()
                time.sleep(0.2)
            output = out_path.read_text()
            props = dict(
                line.split("=", 1) for line in output.splitlines() if line[:4] in ("APIH", "AUTH")
            )
            apihost, (uuid_, key) = props["APIHOST"], props["AUTH"].partition(":")[::2]
            # When an action is created and invoked through it
            with httpx.Client(base_url=apihost, auth=(uuid_, key), timeout=60) as client:
                body = {"exec": {"kind": "python:3.11", "code": "def main(a):\n  return {'ok': 1}"}}
                assert client.put("/api/v1/namespaces/_/actions/up", json=body).status_code == 200
                r = client.post("/api/v1/namespaces/_/actions/up?blocking=true&result=true")
                # Then it answers
                assert r.status_code == 200, r.text
                assert r.json() == {"ok": 1}
                # And both invokers are listed healthy
                assert client.get("/invokers").json() == {"invoker0": "up", "invoker1": "up"}
            pids = member_pids(output)
            assert len(pids) == 3, output
        finally:
            # When it gets SIGTERM
            process.send_signal(signal.SIGTERM)
            code = process.wait(60)
        # Then it and every member exit
        assert code == 0, out_path.read_text()
        for pid in member_pids(out_path.read_text()):
            assert not Path(f"/proc/{pid}").exists() or _zombie(pid), pid


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _restarts(url: str) -> dict[str, float]:
    """squall_cluster_member_restarts_total by member, from a controller's /metrics."""
    try:
        page = httpx.get(f"{url}/metrics", timeout=5, trust_env=False).text
    except httpx.HTTPError:
        return {}
    pattern = r'^squall_cluster_member_restarts_total\{member="([^"]+)"\} (\S+)$'
    return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, page, re.M)}


def _restarted_pid(output: str, member: str) -> int | None:
    found = re.findall(rf"{member} restarted \(pid (\d+)", output)
    return int(found[-1]) if found else None


def test_cluster_up_starts_again_a_member_killed_with_sigkill(tmp_path: Path) -> None:
    with shared_services() as (store, bus):
        out_path = tmp_path / "up.out"
        # Given `squall cluster up` with one controller and two invokers, ready
        port = free_port()
        process = cluster_up(tmp_path / "home", out_path, store, bus, "--controllers", "1",
                             "--invokers", "2", "--port", str(port))  # fmt: skip
        apihost = f"http://127.0.0.1:{port}"
        try:
            poll(lambda: "ready" in out_path.read_text().splitlines() or None
                 if process.poll() is None else out_path.read_text(),
                 90, 0.2, "cluster up to be ready")  # fmt: skip
            output = out_path.read_text()
            assert "ready" in output.splitlines(), output
            auth = dict(line.split("=", 1) for line in output.splitlines() if line[:4] == "AUTH")
            uuid_, _, key = auth["AUTH"].partition(":")
            first = {m.group(1): int(m.group(2)) for m in DESCRIBED.finditer(output)}
            client = httpx.Client(base_url=apihost, auth=(uuid_, key), timeout=60, trust_env=False)
            body = {"exec": {"kind": "python:3.11", "code": "def main(a):\n  return {'ok': 1}"}}
            assert client.put("/api/v1/namespaces/_/actions/up", json=body).status_code == 200

            def serves() -> bool | None:
                try:
                    r = client.post("/api/v1/namespaces/_/actions/up?blocking=true&result=true")
                except httpx.TransportError:  # the controller is not back yet
                    return None
                return True if r.status_code == 200 and r.json() == {"ok": 1} else None

            poll(serves, 60, 0.2, "the first invoke")
            for victim in ("invoker1", "controller0"):
                # When one member is killed with SIGKILL
                os.kill(first[victim], signal.SIGKILL)

                # Then cluster up starts it again, as a new process, and says so
                def restarted(v: str = victim) -> int | None:
                    return _restarted_pid(out_path.read_text(), v)

                pid = poll(restarted, 60, 0.2, f"{victim} to be restarted")
                assert pid != first[victim]
                assert process.poll() is None, out_path.read_text()

                # And counts the restart in the controller's /metrics
                def counted(v: str = victim) -> bool | None:
                    return _restarts(apihost).get(v) == 1.0 or None

                poll(counted, 60, 0.2, f"{victim}'s restart in /metrics")
                # And the cluster serves again, with every invoker healthy
                poll(serves, 60, 0.2, f"an invoke after {victim} was killed")
                poll(lambda: client.get("/invokers").json()
                     == {"invoker0": "up", "invoker1": "up"} or None,
                     60, 0.2, "both invokers up")  # fmt: skip
            output = out_path.read_text()
            assert "invoker1 (pid" in output and "exited with signal SIGKILL" in output, output
            client.close()
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(60)
        # And SIGTERM still stops it and every member, restarted ones included
        output = out_path.read_text()
        assert code == 0, output
        pids = member_pids(output) + [int(p) for p in re.findall(r"restarted \(pid (\d+)", output)]
        assert len(pids) == 5, output
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or _zombie(pid), pid


class _Foreign(http.server.BaseHTTPRequestHandler):
    """Another server: answers every GET with 200 and a JSON body, as a controller might."""

    def do_GET(self) -> None:
        body = b'{"controller": "0", "pid": 1, "start": "not-yours"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_cluster_up_refuses_a_port_another_server_holds(tmp_path: Path) -> None:
    # Given another HTTP server listening on the port the first controller would use
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Foreign)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    out_path = tmp_path / "up.out"
    try:
        # When `squall cluster up` is started on that port
        store, bus = "postgresql://postgres@127.0.0.1:5432/test", "nats://127.0.0.1:4222"
        process = cluster_up(tmp_path / "home", out_path, store, bus, "--controllers", "1",
                             "--invokers", "1", "--port", str(port))  # fmt: skip
        code = process.wait(60)
        # And the other server still answers (nothing took its port)
        assert httpx.get(f"http://127.0.0.1:{port}/ping", trust_env=False).json()["start"] == (
            "not-yours"
        )
    finally:
        server.shutdown()
        server.server_close()
    # Then it fails, saying which port is taken, and never says it is ready
    output = out_path.read_text()
    assert code == 1, output
    assert f"controller0 cannot listen on 127.0.0.1:{port}: another process holds the port" in (
        output
    )
    lines = output.splitlines()
    assert "ready" not in lines and not any(line.startswith("AUTH=") for line in lines), output
