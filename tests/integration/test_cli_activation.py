"""``squall activation`` as a user runs it against the standalone, ``poll`` included."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _cli_client import HELLO_JS, Wsk, write
from _standalone import Standalone

from squall.cli.client import exits

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


@pytest.fixture
def wsk(standalone: Standalone, tmp_path: Path) -> Wsk:
    return Wsk.for_server(standalone, tmp_path)


@pytest.fixture
def hello(wsk: Wsk, unique: Callable[[str], str]) -> str:
    name = unique("hello")
    wsk.run("action", "create", name, str(write(wsk.home, "hello.js", HELLO_JS)))
    return name


def test_list_get_logs_result(wsk: Wsk, hello: str) -> None:
    # Given a finished activation
    invoked = wsk.run("action", "invoke", hello, "--blocking", "-p", "name", "Cy")
    activation_id = invoked.out.split("\n", 1)[0].split()[-1]

    # Then list shows it in wsk's columns
    listed = wsk.run("activation", "list", hello).out.splitlines()
    assert listed[0] == "activations"
    assert listed[1].split()[:2] == ["Datetime", "Activation"]
    row = next(line for line in listed if activation_id in line)
    assert "nodejs:20" in row and "success" in row and f"{hello}:0.0.1" in row

    # And get, logs (raw and stripped), result show it
    got = wsk.run("activation", "get", activation_id)
    assert got.out.startswith(f"ok: got activation {activation_id}\n")
    assert json.loads(got.out.split("\n", 1)[1])["activationId"] == activation_id
    logs = wsk.run("activation", "logs", activation_id).out
    assert logs.rstrip().endswith("stdout: hello Cy")
    assert wsk.run("activation", "logs", activation_id, "--strip").out == "hello Cy\n"
    result = wsk.run("activation", "result", activation_id).out
    assert json.loads(result) == {"greeting": "Hello Cy"}
    assert wsk.json("activation", "list", hello, "--limit", "1")[0]["activationId"] == (
        activation_id
    )


def test_last(wsk: Wsk, hello: str) -> None:
    invoked = wsk.run("action", "invoke", hello, "--blocking", "-p", "name", "Last")
    activation_id = invoked.out.split("\n", 1)[0].split()[-1]

    # --last is the newest of the namespace; other tests may invoke meanwhile, so only
    # check that the answer has the shape of an activation newer than or equal to ours
    newest = json.loads(wsk.run("activation", "get", "--last").out.split("\n", 1)[1])
    ours = wsk.json("activation", "get", activation_id)
    assert newest["start"] >= ours["start"]


def test_a_missing_activation(wsk: Wsk) -> None:
    missing = wsk.run("activation", "get", "0" * 32, rc=exits.NOT_FOUND)
    assert "The requested resource does not exist." in missing.err


@pytest.fixture
def poller(wsk: Wsk, hello: str) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    process = wsk.popen("activation", "poll", hello, "--interval", "0.2")
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE_S)
        reader.join(timeout=DEADLINE_S)
        assert process.stdout is not None
        process.stdout.close()


def _wait_for(lines: queue.Queue[str], wanted: str, seen: list[str]) -> None:
    end = time.monotonic() + DEADLINE_S
    while not any(wanted in line for line in seen):
        remaining = end - time.monotonic()
        assert remaining > 0, f"no {wanted!r} in poll output:\n{''.join(seen)}"
        try:
            seen.append(lines.get(timeout=remaining))
        except queue.Empty:
            continue


def test_poll_shows_a_new_activation_s_logs(
    wsk: Wsk, hello: str, poller: tuple[subprocess.Popen[str], queue.Queue[str]]
) -> None:
    process, lines = poller
    seen: list[str] = []
    # Given poll has started (it says so once it knows where to start from)
    _wait_for(lines, "Polling for activation logs", seen)

    # When the action is invoked
    invoked = wsk.run("action", "invoke", hello, "-p", "name", "Polly")
    activation_id = invoked.out.split()[-1]

    # Then poll prints the activation and its log line
    _wait_for(lines, "hello Polly", seen)
    output = "".join(seen)
    assert f"Activation: '{hello}' ({activation_id})" in output

    # And SIGTERM stops it cleanly
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=DEADLINE_S) == exits.OK
