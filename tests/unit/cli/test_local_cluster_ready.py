"""``LocalCluster``'s readiness checks against real sockets: a port another server holds
is not free, and an answer on a member's port counts only when it is the member's own
(its start token and pid); ``cluster up`` itself is tested in tests/cluster/."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _standalone import free_port

from squall.cli.local_cluster import LocalCluster, port_free


class _Pong(http.server.BaseHTTPRequestHandler):
    """Answers /ping like a Squall member would, with a token of its own."""

    def do_GET(self) -> None:
        body = json.dumps({"controller": "0", "pid": 1, "start": "someone-else"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def foreign() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pong)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _cluster(tmp_path: Path, port: int) -> LocalCluster:
    return LocalCluster(
        tmp_path, store_url="postgresql://unused", bus_url="nats://unused",
        controllers=1, invokers=0, base_port=port,
    )  # fmt: skip


def test_a_port_another_server_listens_on_is_not_free(foreign: int) -> None:
    assert port_free(foreign) is False
    assert port_free(free_port()) is True


def test_an_answer_from_another_server_is_not_the_members(tmp_path: Path, foreign: int) -> None:
    # Given a member whose port another server holds / Then its answer is not the member's
    local = _cluster(tmp_path, foreign)
    assert local.answers("controller0") is False


def test_no_answer_at_all_is_told_apart(tmp_path: Path) -> None:
    local = _cluster(tmp_path, free_port())
    assert local.answers("controller0") is None
