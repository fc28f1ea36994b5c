"""A Python or Node.js cold start through the whole platform writes /init and its first
/run together (``InitAndRun``): the record is what two exchanges gave (initTime, the logs
of both, the deadline counted from the run's start), and a failed /init runs nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from poolsupport import NODE, PY

from squall.cli.standalone import Standalone
from squall.config import Settings
from squall.sandbox.http import _Connection

pytestmark = pytest.mark.anyio

SLOW_INIT = """
import os, time
print("loading")
time.sleep(0.3)

def main(args):
    print("running")
    return {"now": time.time_ns() // 1_000_000, "deadline": int(os.environ["__OW_DEADLINE"])}
"""

FAILING_INIT = """
print("loading")
raise RuntimeError("no module today")

def main(args):
    print("ran")
    return {"ran": True}
"""


def _annotations(record: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in record["annotations"]}


def _targets(data: bytes) -> list[str]:
    """The request targets in what one write sent to a runtime."""
    return [part.split(b" ", 1)[0].decode() for part in data.split(b"POST ")[1:]]


async def test_a_python_cold_starts_record_is_that_of_an_init_then_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the writes to the runtimes, each recorded with the requests it carried (the
    # real ones: a pipeline's, and a single request's)
    writes: list[list[str]] = []
    write_ahead, request = _Connection.write_ahead, _Connection.request

    def recorded_ahead(conn: _Connection, data: bytes, count: int) -> None:
        writes.append(_targets(data))
        write_ahead(conn, data, count)

    def recorded(conn: _Connection, data: bytes, deadline: float | None) -> Any:
        writes.append(_targets(data))
        return request(conn, data, deadline)

    monkeypatch.setattr(_Connection, "write_ahead", recorded_ahead)
    monkeypatch.setattr(_Connection, "request", recorded)
    # And the platform, a Python action whose module takes 0.3 s to load, and one whose
    # module fails to load
    system = await Standalone.start(Settings(home=tmp_path / "home", keep_warm_s=60))
    user, _, key = system.guest_auth.partition(":")
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=system.app),
            base_url="http://testserver",
            auth=(user, key),
            timeout=30.0,
        ) as client:
            for name, code in (("slow", SLOW_INIT), ("failing", FAILING_INIT)):
                body = {"exec": {"kind": PY, "code": code}, "limits": {"timeout": 20_000}}
                r = await client.put(f"/api/v1/namespaces/_/actions/{name}", json=body)
                assert r.status_code == 200, r.text
            # When the slow one is invoked cold
            writes.clear()
            r = await client.post(
                "/api/v1/namespaces/_/actions/slow", params={"blocking": "true"}, json={}
            )
            assert r.status_code == 200, r.text
            record = r.json()
            notes = _annotations(record)
            result = record["response"]["result"]
            # Then its record holds the /init's time and the logs of both requests
            assert notes["initTime"] >= 300
            assert [line.split(" ", 2)[2] for line in record["logs"]] == ["loading", "running"]
            # And its deadline counts from the run's start: after the /init, not from the
            # activation's start
            assert result["deadline"] - 20_000 >= record["start"] + 300
            assert result["deadline"] - 20_000 <= result["now"]
            # And its /init and /run went out together, in one write
            assert writes == [["/init", "/run"]]
            # When the failing one is invoked cold
            r = await client.post(
                "/api/v1/namespaces/_/actions/failing", params={"blocking": "true"}, json={}
            )
            # Then its record is OpenWhisk's init failure, and its code ran no main
            record = r.json()
            assert r.status_code == 502, r.text
            assert record["response"]["status"] == "action developer error"
            error = record["response"]["result"]["error"]
            assert error.startswith("Initialization has failed due to: ")
            assert "no module today" in error
            assert "initTime" in _annotations(record)
            stdout = [line for line in record["logs"] if " stdout: " in line]
            assert [line.split(" ", 2)[2] for line in stdout] == ["loading"]
    finally:
        await system.close()


HANGING_INIT = """
import time
time.sleep(30)

def main(args):
    print("ran")
    return {"ran": True}
"""


async def test_a_python_init_past_the_time_limit_ends_the_cold_start_without_its_run(
    tmp_path: Path,
) -> None:
    # Given the platform and a Python action whose module loads for longer than its
    # 500 ms time limit
    system = await Standalone.start(Settings(home=tmp_path / "home", keep_warm_s=60))
    user, _, key = system.guest_auth.partition(":")
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=system.app),
            base_url="http://testserver",
            auth=(user, key),
            timeout=30.0,
        ) as client:
            body = {"exec": {"kind": PY, "code": HANGING_INIT}, "limits": {"timeout": 500}}
            r = await client.put("/api/v1/namespaces/_/actions/hanging", json=body)
            assert r.status_code == 200, r.text
            # When it is invoked cold
            r = await client.post(
                "/api/v1/namespaces/_/actions/hanging", params={"blocking": "true"}, json={}
            )
            # Then its record is OpenWhisk's init timeout, and no run answered
            record = r.json()
            assert r.status_code == 502, r.text
            assert record["response"]["status"] == "action developer error"
            assert record["response"]["result"] == {
                "error": "The action exceeded its time limits of 500 milliseconds "
                "during initialization."
            }
            assert _annotations(record)["timeout"] is True
            assert not [line for line in record["logs"] if line.endswith(" ran")]
    finally:
        await system.close()


NODE_SLOW_INIT = """
console.log('loading');
const start = Date.now();
while (Date.now() - start < 300) {}

function main(args) {
  console.log('running');
  return { now: Date.now(), deadline: parseInt(process.env.__OW_DEADLINE, 10) };
}
"""

NODE_FAILING_INIT = """
console.log('loading');
throw new Error('no module today');
function main(args) { console.log('ran'); return { ran: true }; }
"""

NODE_HANGING_INIT = """
const start = Date.now();
while (Date.now() - start < 30000) {}
function main(args) { console.log('ran'); return { ran: true }; }
"""


async def test_a_nodejs_cold_starts_record_is_that_of_an_init_then_a_run(
    tmp_path: Path,
) -> None:
    # Given the platform, a Node.js action whose module takes 0.3 s to load, one whose
    # module fails to load and one whose module loads for longer than its 500 ms limit
    system = await Standalone.start(Settings(home=tmp_path / "home", keep_warm_s=60))
    user, _, key = system.guest_auth.partition(":")
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=system.app),
            base_url="http://testserver",
            auth=(user, key),
            timeout=30.0,
        ) as client:
            actions = (
                ("slow", NODE_SLOW_INIT, 20_000),
                ("failing", NODE_FAILING_INIT, 20_000),
                ("hanging", NODE_HANGING_INIT, 500),
            )
            for name, code, timeout in actions:
                body = {"exec": {"kind": NODE, "code": code}, "limits": {"timeout": timeout}}
                r = await client.put(f"/api/v1/namespaces/_/actions/{name}", json=body)
                assert r.status_code == 200, r.text

            async def invoke(name: str) -> tuple[int, dict[str, Any]]:
                r = await client.post(
                    f"/api/v1/namespaces/_/actions/{name}", params={"blocking": "true"}, json={}
                )
                record: dict[str, Any] = r.json()
                return r.status_code, record

            # When the slow one is invoked cold
            status, record = await invoke("slow")
            # Then its record holds the /init's time and the logs of both requests
            assert status == 200, record
            result = record["response"]["result"]
            assert _annotations(record)["initTime"] >= 300
            assert [line.split(" ", 2)[2] for line in record["logs"]] == ["loading", "running"]
            # And its deadline counts from the run's start, after the /init
            assert result["deadline"] - 20_000 >= record["start"] + 300
            assert result["deadline"] - 20_000 <= result["now"]
            # When the failing one is invoked cold
            status, record = await invoke("failing")
            # Then its record is OpenWhisk's init failure, and its code ran no main
            assert status == 502, record
            assert record["response"]["status"] == "action developer error"
            error = record["response"]["result"]["error"]
            assert error.startswith("Initialization has failed due to: ")
            assert "no module today" in error
            assert not [line for line in record["logs"] if line.endswith(" ran")]
            # When the hanging one is invoked cold
            status, record = await invoke("hanging")
            # Then its record is OpenWhisk's init timeout, and no run answered
            assert status == 502, record
            assert record["response"]["result"] == {
                "error": "The action exceeded its time limits of 500 milliseconds "
                "during initialization."
            }
            assert _annotations(record)["timeout"] is True
            assert not [line for line in record["logs"] if line.endswith(" ran")]
    finally:
        await system.close()
