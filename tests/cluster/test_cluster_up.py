"""``squall cluster up`` as a user runs it: one command to a working cluster, and Ctrl-C
(SIGINT) or SIGTERM stops every member."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from clustersupport import (
    NATS_PORT,
    PG_HOST,
    PG_PORT,
    delete_streams,
    postgres_schema,
    reachable,
    require,
)

pytestmark = pytest.mark.cluster


def member_pids(output: str) -> list[int]:
    return [int(line.rsplit("pid ", 1)[1].rstrip(")")) for line in output.splitlines()
            if "(pid " in line]  # fmt: skip


def test_cluster_up_serves_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    require("PostgreSQL on 127.0.0.1:5432", reachable(PG_HOST, PG_PORT))
    require("NATS on 127.0.0.1:4222", reachable(PG_HOST, NATS_PORT))
    prefix = f"t{uuid.uuid4().hex[:8]}"
    with postgres_schema() as schema:
        store = f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        bus = f"nats://127.0.0.1:4222?prefix={prefix}"
        out_path = tmp_path / "up.out"
        # Given `squall cluster up` with one controller and two invokers
        with open(out_path, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "squall.cli.main", "cluster", "up",
                 "--controllers", "1", "--invokers", "2", "--store", store, "--bus", bus,
                 "--home", str(tmp_path / "home"), "--port", "0"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "SQUALL_PING_INTERVAL_S": "0.5",
                     "SQUALL_STEM_CELLS": ""},
            )  # fmt: skip
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
            delete_streams("nats://127.0.0.1:4222", prefix)
        # Then it and every member exit
        assert code == 0, out_path.read_text()
        for pid in member_pids(out_path.read_text()):
            assert not Path(f"/proc/{pid}").exists() or _zombie(pid), pid


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True
