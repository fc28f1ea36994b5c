"""Hostile and broken actions against a real ``squall standalone``: each is contained,
answered with OpenWhisk's message, the server is unaffected, and the next run is healthy.

Every action here takes a ``harm`` argument: with it, it misbehaves; without it, it
returns ``{"ok": true}`` — the same action then shows that the platform recovered (a new
container, since a developer error destroys the one that failed).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from _standalone import Standalone, clean_env, poll, start

from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
RECORD_DEADLINE_S = 30.0
ABNORMAL_RUN = "The action did not produce a valid response and exited unexpectedly."
MEMORY_EXHAUSTED = "The action exhausted its memory and was aborted."


def action(client: httpx.Client, name: str, kind: str, code: str, **limits: int) -> None:
    body = {"exec": {"kind": kind, "code": textwrap.dedent(code)}, "limits": limits}
    r = client.put(f"/namespaces/_/actions/{name}", json=body)
    assert r.status_code == 200, r.text


def invoke(client: httpx.Client, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """A blocking invoke's full record (200 or 502 both carry it)."""
    r = client.post(f"/namespaces/_/actions/{name}", params={"blocking": "true"}, json=args or {})
    assert r.status_code in (200, 502), r.text
    record: dict[str, Any] = r.json()
    return record


def annotation(record: dict[str, Any], key: str) -> Any:
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


def developer_error(record: dict[str, Any]) -> Any:
    assert record["response"]["status"] == "action developer error", record["response"]
    assert record["response"]["status"] == "action developer error"
    return record["response"]["result"]


def assert_healthy(
    standalone: Standalone, client: httpx.Client, name: str, *, cold: bool = True
) -> None:
    """The server still runs and answers, and ``name`` runs fine — in a fresh container
    after a developer error (``cold``), which destroys the one that failed."""
    assert standalone.running(), standalone.log()
    assert client.get("/namespaces").status_code == 200
    record = invoke(client, name)
    assert record["response"]["result"] == {"ok": True}, record["response"]
    assert (annotation(record, "initTime") is not None) is cold


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def disk_bytes(directory: Path) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for file in files:
            with contextlib.suppress(FileNotFoundError):  # a file gone while walking
                total += os.lstat(os.path.join(root, file)).st_blocks * 512
    return total


# -- limits -------------------------------------------------------------------------------

LOOP = {
    "python:3.11": """
        def main(args):
            while args.get("harm"):
                pass
            return {"ok": True}
    """,
    "nodejs:20": """
        function main(args) {
            while (args.harm) {}
            return {ok: true};
        }
    """,
}

HOG = {
    "python:3.11": """
        def main(args):
            if args.get("harm"):
                hog = b"x" * (args["mb"] * 1024 * 1024)
                return {"size": len(hog)}
            return {"ok": True}
    """,
    "nodejs:20": """
        function main(args) {
            if (args.harm) return {size: Buffer.alloc(args.mb * 1024 * 1024, 1).length};
            return {ok: true};
        }
    """,
}


@pytest.mark.parametrize("kind", sorted(LOOP))
def test_an_infinite_loop_is_cut_at_its_time_limit(
    standalone: Standalone, client: httpx.Client, unique: Callable[[str], str], kind: str
) -> None:
    # Given an action that loops forever, limited to one second
    name = unique("loop")
    action(client, name, kind, LOOP[kind], timeout=1000)
    # When it runs, Then it is cut off with OpenWhisk's message and the timeout annotation
    record = invoke(client, name, {"harm": True})
    assert developer_error(record) == {
        "error": "The action exceeded its time limits of 1000 milliseconds."
    }
    assert annotation(record, "timeout") is True
    assert_healthy(standalone, client, name)


@pytest.mark.parametrize("kind", sorted(HOG))
def test_a_memory_hog_at_twice_its_limit_is_aborted(
    standalone: Standalone, client: httpx.Client, unique: Callable[[str], str], kind: str
) -> None:
    # Given an action limited to 128 MB that fills 256 MB
    name = unique("hog")
    action(client, name, kind, HOG[kind], memory=128)
    server_rss = rss_kb(standalone.process.pid)
    # When it runs, Then the kernel stops it at its limit and the record says so
    record = invoke(client, name, {"harm": True, "mb": 256})
    assert developer_error(record) == {"error": MEMORY_EXHAUSTED}
    assert annotation(record, "timeout") is False
    # And the server did not pay for it
    assert rss_kb(standalone.process.pid) < server_rss + 64 * 1024
    assert_healthy(standalone, client, name)


FORK_BOMB = """
    import os
    def main(args):
        while args.get("harm"):
            try:
                os.fork()
            except OSError:
                pass
        return {"ok": True}
"""


def test_a_fork_bomb_is_contained(
    standalone: Standalone, client: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given a fork bomb limited to three seconds, and a quick action next to it
    name, quick = unique("bomb"), unique("quick")
    action(client, name, "python:3.11", FORK_BOMB, timeout=3000)
    action(client, quick, "python:3.11", "def main(args):\n    return {'ok': True}\n")
    # When the bomb is started
    r = client.post(f"/namespaces/_/actions/{name}", json={"harm": True})
    assert r.status_code == 202, r.text
    activation_id = r.json()["activationId"]
    # Then, while it runs, other actions still run
    assert invoke(client, quick)["response"]["result"] == {"ok": True}

    # And the bomb ends as a developer error (its time limit, its processes all killed)
    def final() -> dict[str, Any] | None:
        got: dict[str, Any] = client.get(f"/namespaces/_/activations/{activation_id}").json()
        return None if got["response"]["status"] == "pending" else got

    record = poll(final, RECORD_DEADLINE_S, interval_s=0.1, what="the fork bomb's record")
    assert developer_error(record) == {
        "error": "The action exceeded its time limits of 3000 milliseconds."
    }
    assert_healthy(standalone, client, name)


LOG_FLOOD = """
    import sys
    def main(args):
        if args.get("harm"):
            line = "x" * 1023 + "\\n"
            for _ in range(args["mb"] * 1024):
                sys.stdout.write(line)
            return {"flooded": args["mb"]}
        return {"ok": True}
"""


def test_a_100_mb_log_flood_is_truncated_as_it_is_written(
    standalone: Standalone, client: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given an action that prints 100 MB, with a log limit of 1 MB
    name = unique("flood")
    action(client, name, "python:3.11", LOG_FLOOD, logs=1)
    server_rss = rss_kb(standalone.process.pid)
    disk = disk_bytes(standalone.home)
    # When it runs
    record = invoke(client, name, {"harm": True, "mb": 100})
    # Then it succeeds, its logs stop at 1 MB and their last line says so
    assert record["response"]["result"] == {"flooded": 100}
    logs = record["logs"]
    assert logs[-1] == (
        "Logs were truncated because the total bytes size exceeds the limit of 1048576 bytes."
    )
    assert len(logs) - 1 == 1048576 // 1023  # whole lines of 1023 bytes (newline not counted)
    assert all(line.endswith("stdout: " + "x" * 1023) for line in logs[:-1])
    # And neither the server's memory nor the disk took the 100 MB
    assert rss_kb(standalone.process.pid) < server_rss + 64 * 1024
    assert disk_bytes(standalone.home) < disk + 16 * MIB
    assert_healthy(standalone, client, name, cold=False)


def test_a_result_over_1_mb_is_truncated_with_openwhisks_message(
    standalone: Standalone, client: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given an action returning a 2 MB result
    name = unique("big")
    code = """
        def main(args):
            return {"s": "y" * (2 * 1024 * 1024)} if args.get("harm") else {"ok": True}
    """
    action(client, name, "python:3.11", code)
    # When it runs, Then the result is replaced by the truncation message
    record = invoke(client, name, {"harm": True})
    error = record["response"]["result"]["error"]
    assert error.startswith(
        "The action produced a response that exceeded the allowed length: 2097160 > 1048576 "
        'bytes. The truncated response was: {"s":"yyy'
    )
    assert record["response"]["success"] is False
    # And the container stays warm (an application error, as in OpenWhisk)
    assert_healthy(standalone, client, name, cold=False)


# -- confinement --------------------------------------------------------------------------

PROBE = """
    import os, socket
    def main(args):
        if not args.get("harm"):
            return {"ok": True}
        seen = {}
        for path in args.get("read", []):
            try:
                with open(path, "rb") as f:
                    seen["read " + path] = len(f.read(10))
            except OSError as ex:
                seen["read " + path] = type(ex).__name__
        for path in args.get("write", []):
            try:
                with open(path, "w") as f:
                    f.write("pwned")
                seen["write " + path] = "ok"
            except OSError as ex:
                seen["write " + path] = type(ex).__name__
        if "port" in args:
            try:
                socket.create_connection(("127.0.0.1", args["port"]), timeout=3).close()
                seen["connect"] = "ok"
            except OSError as ex:
                seen["connect"] = type(ex).__name__
        return seen
"""


@pytest.fixture
def probe(client: httpx.Client, unique: Callable[[str], str]) -> Iterator[str]:
    name = unique("probe")
    action(client, name, "python:3.11", PROBE)
    yield name


def test_the_api_port_on_loopback_is_unreachable(
    standalone: Standalone, client: httpx.Client, probe: str
) -> None:
    # When an action connects to 127.0.0.1 on the API's port
    port = urlsplit(standalone.api_host).port
    seen = invoke(client, probe, {"harm": True, "port": port})["response"]["result"]
    # Then nothing listens there: its loopback is its own
    assert seen == {"connect": "ConnectionRefusedError"}


def test_the_store_and_host_secrets_cannot_be_read(
    standalone: Standalone, client: httpx.Client, probe: str
) -> None:
    # When an action reads the store file, the credentials, /etc/shadow
    paths = [
        str(standalone.home / "squall.db"),
        str(standalone.home / "wskprops"),
        "/etc/shadow",
        "/root/.bash_history",
    ]
    seen = invoke(client, probe, {"harm": True, "read": paths})["response"]["result"]
    # Then none of them exists in its sandbox, while its own system files do
    assert seen == {f"read {path}": "FileNotFoundError" for path in paths}
    system = invoke(client, probe, {"harm": True, "read": ["/etc/passwd"]})["response"]
    assert system["result"] == {"read /etc/passwd": 10}


def test_nothing_outside_tmp_can_be_written(
    standalone: Standalone, client: httpx.Client, probe: str
) -> None:
    # When an action writes outside /tmp, into the server's home among others
    targets = ["/pwned", "/etc/pwned", "/usr/pwned", str(standalone.home / "pwned")]
    seen = invoke(client, probe, {"harm": True, "write": [*targets, "/tmp/mine"]})
    result = seen["response"]["result"]
    # Then only /tmp takes it, and nothing appeared on the host
    assert result.pop("write /tmp/mine") == "ok"
    assert set(result) == {f"write {t}" for t in targets}
    assert set(result.values()) <= {"OSError", "FileNotFoundError", "PermissionError"}
    assert not (standalone.home / "pwned").exists()
    assert not Path("/pwned").exists()


# -- broken actions -----------------------------------------------------------------------

EXIT = {
    "python:3.11": """
        import os
        def main(args):
            if args.get("harm"):
                print("leaving")
                os._exit(3)
            return {"ok": True}
    """,
    "nodejs:20": """
        function main(args) {
            if (args.harm) { console.log('leaving'); process.exit(3); }
            return {ok: true};
        }
    """,
}


@pytest.mark.parametrize("kind", sorted(EXIT))
def test_an_action_exiting_mid_run_is_a_developer_error(
    standalone: Standalone, client: httpx.Client, unique: Callable[[str], str], kind: str
) -> None:
    # Given an action that exits its runtime
    name = unique("exit")
    action(client, name, kind, EXIT[kind])
    # When it runs, Then OpenWhisk's message, with what it printed in the logs
    record = invoke(client, name, {"harm": True})
    assert developer_error(record) == {"error": ABNORMAL_RUN}
    assert [line.split(" ", 1)[1] for line in record["logs"]] == ["stdout: leaving"]
    assert_healthy(standalone, client, name)


# Answers its own /run with an HTTP answer whose body is not JSON, then exits: what a
# broken runtime image would do.
INVALID_JSON_ANSWER = """
    import os, socket
    def main(args):
        if not args.get("harm"):
            return {"ok": True}
        # Every connected stream socket of the process, found by descriptor: the proxy's
        # connection need not be a socket.socket object the action could find otherwise.
        for fd in map(int, os.listdir("/proc/self/fd")):
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                continue  # not a socket
            try:
                if sock.type != socket.SOCK_STREAM:
                    continue
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    continue
                sock.getpeername()
                sock.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 9\\r\\n\\r\\n{not json")
            except OSError:
                continue
            finally:
                sock.detach()
        os._exit(0)
"""


def test_an_answer_that_is_not_json_is_a_developer_error(
    standalone: Standalone, client: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given an action whose run is answered with invalid JSON
    name = unique("badjson")
    action(client, name, "python:3.11", INVALID_JSON_ANSWER)
    # When it runs, Then OpenWhisk's message
    record = invoke(client, name, {"harm": True})
    assert developer_error(record) == {
        "error": "The action did not produce a valid JSON or JSON Array response."
    }
    assert_healthy(standalone, client, name)


NOT_JSON_RESULT = {
    "python:3.11": """
        def main(args):
            return {"nan": float("nan")} if args.get("harm") else {"ok": True}
    """,
    "nodejs:20": """
        function main(args) { return args.harm ? {big: 10n} : {ok: true}; }
    """,
}


@pytest.mark.parametrize("kind", sorted(NOT_JSON_RESULT))
def test_a_result_that_is_not_json_is_a_developer_error(
    standalone: Standalone, client: httpx.Client, unique: Callable[[str], str], kind: str
) -> None:
    # Given an action returning a value JSON cannot represent
    name = unique("notjson")
    action(client, name, kind, NOT_JSON_RESULT[kind])
    # When it runs, Then a developer error saying the result is not JSON
    error = developer_error(invoke(client, name, {"harm": True}))["error"]
    assert error.startswith("The action did not return a valid JSON value: ")
    assert_healthy(standalone, client, name)


def test_a_warm_container_is_reused_inside_its_sandbox(
    client: httpx.Client, unique: Callable[[str], str]
) -> None:
    # Given an action that counts its runs in its own /tmp
    name = unique("warm")
    code = """
        def main(args):
            try:
                n = int(open("/tmp/count").read())
            except FileNotFoundError:
                n = 0
            open("/tmp/count", "w").write(str(n + 1))
            return {"runs": n + 1}
    """
    action(client, name, "python:3.11", code)
    # When it runs twice, Then the second run is warm (no initTime) and in the same sandbox
    first, second = invoke(client, name), invoke(client, name)
    assert first["response"]["result"] == {"runs": 1}
    assert annotation(first, "initTime") is not None
    assert second["response"]["result"] == {"runs": 2}
    assert annotation(second, "initTime") is None


@pytest.mark.anyio
async def test_a_second_init_is_refused_by_the_sandboxed_runtime(
    tmp_path: Path, anyio_backend: str
) -> None:
    # Given an isolated container (the invoker itself never sends /init twice)
    factory = ProcessContainerFactory(tmp_path / "containers", "https://api")
    try:
        for kind, code in (
            ("python:3.11", "def main(a):\n    return {}"),
            ("nodejs:20", "function main() { return {} }"),
        ):
            container = await factory.create(kind, 128)
            assert (await container.initialize({"code": code}, 10)).status == 200
            # When /init comes again, Then the runtime answers 403
            again = await container.initialize({"code": code}, 10)
            assert (again.status, json.loads(again.body)) == (
                403,
                {"error": "Cannot initialize the action more than once."},
            )
    finally:
        await factory.close()


# -- hosts that cannot isolate ------------------------------------------------------------


def test_a_host_without_isolation_is_refused_unless_the_operator_opts_out(
    tmp_path: Path,
) -> None:
    # Given a host where bubblewrap cannot be found
    no_bwrap = {"PATH": str(tmp_path / "empty-bin")}
    # When squall standalone starts
    done = subprocess.run(
        [sys.executable, "-m", "squall.cli.main", "standalone", "--home", str(tmp_path / "a")],
        env=clean_env(no_bwrap),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it refuses, saying what is missing, what to install and how to opt out
    assert done.returncode == 1, done.stderr
    assert "This host cannot isolate actions: bubblewrap (bwrap) is not installed" in done.stderr
    assert "apt-get install bubblewrap" in done.stderr
    assert "--unsafe-no-isolation" in done.stderr
    assert not (tmp_path / "a" / "squall.db").exists()
    # When the operator opts out explicitly, Then it starts and runs actions as plain
    # processes (which see the host)
    server = start(tmp_path / "b", env={**no_bwrap, "SQUALL_UNSAFE_NO_ISOLATION": "1"})
    try:
        with server.client() as client:
            action(
                client,
                "peek",
                "python:3.11",
                "import os\ndef main(a):\n    return {'home': os.path.isdir(a['home'])}\n",
            )
            record = invoke(client, "peek", {"home": str(server.home)})
            assert record["response"]["result"] == {"home": True}
        assert "--unsafe-no-isolation" in server.log()
    finally:
        server.stop_cleanly()
