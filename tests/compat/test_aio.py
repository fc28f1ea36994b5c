"""Adobe's ``aio rt:`` commands (``@adobe/aio-cli``, pinned in ``aiocli.py``) against a live
Squall, unchanged, configured only by ``AIO_RUNTIME_APIHOST`` / ``AIO_RUNTIME_AUTH`` /
``AIO_RUNTIME_NAMESPACE`` and ``USE_RUNTIME_AUTH=true``.

The first test is the seed document's workflow word for word; the others cover the rest of
the ``rt:`` commands a user of Adobe I/O Runtime relies on. The server is this module's own,
so ``--last`` always means this module's last activation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from _standalone import Standalone, poll, start
from aiocli import Aio, install
from logreceiver import (
    AZURE_CUSTOMER_ID,
    AZURE_LOG_TYPE,
    AZURE_SHARED_KEY,
    NEW_RELIC_KEY,
    SPLUNK_TOKEN,
    ThreadedReceiver,
)

pytestmark = pytest.mark.compat

# The seed's hello.js (seed/how-runtime-works.md).
HELLO_JS = "function main() {\n  console.log('Hello World');\n  return { hello: 'world' };\n}\n"
LOGGER_JS = "function main(p) {\n  console.log('forward me ' + p.mark);\n  return {};\n}\n"
ACTIVATION_ID = re.compile(r"\b[0-9a-f]{32}\b")


@pytest.fixture(scope="module")
def receiver() -> Iterator[ThreadedReceiver]:
    """The log-forwarding destinations, on loopback (tests/logreceiver.py)."""
    server = ThreadedReceiver()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, receiver: ThreadedReceiver
) -> Iterator[Standalone]:
    # Azure Log Analytics' Data Collector API is the receiver (its real host is public).
    env = {"SQUALL_LOG_FORWARDING_AZURE_URL": receiver.url}
    squall = start(tmp_path_factory.mktemp("aio-squall"), keep_warm_s=60, env=env)
    try:
        yield squall
    finally:
        squall.stop_cleanly()


@pytest.fixture(scope="module")
def aio(server: Standalone, tmp_path_factory: pytest.TempPathFactory) -> Aio:
    home = tmp_path_factory.mktemp("aio-home")
    (home / "hello.js").write_text(HELLO_JS)
    (home / "logger.js").write_text(LOGGER_JS)
    return Aio(install(), server, home)


def test_the_seeds_workflow(aio: Aio) -> None:
    # Given the seed's hello.js
    # When it is created and invoked with the seed's two commands
    aio.run("rt:action:create", "helloAction", "hello.js")
    invoked = aio.run("rt:action:invoke", "helloAction", "--result")
    # Then the result is the seed's
    assert json.loads(invoked.stdout) == {"hello": "world"}

    # And the activation is listed
    listed = aio.run("rt:activation:list")
    assert "helloAction" in listed.stdout
    assert "success" in listed.stdout
    assert ACTIVATION_ID.search(listed.stdout), listed.stdout

    # And its logs (after aio asked the log-forwarding endpoint) show what it printed
    logs = aio.run("rt:activation:logs", "--last")
    assert "Hello World" in logs.stdout
    assert "helloAction" in logs.stdout


def test_action_get_update_list_delete(aio: Aio) -> None:
    # Given an action
    aio.run("rt:action:create", "aioCrud", "hello.js")
    # When it is updated with a default parameter
    aio.run("rt:action:update", "aioCrud", "hello.js", "--param", "who", "aio")
    # Then get shows the new version and the parameter
    got = aio.run("rt:action:get", "aioCrud")
    assert '"version": "0.0.2"' in got.stdout
    assert '"key": "who"' in got.stdout
    # And list shows it
    assert "aioCrud" in aio.run("rt:action:list").stdout
    # And after delete it is gone from the list
    aio.run("rt:action:delete", "aioCrud")
    assert "aioCrud" not in aio.run("rt:action:list").stdout


def test_activation_get_and_result(aio: Aio) -> None:
    # Given an invocation
    aio.run("rt:action:create", "aioResult", "hello.js")
    aio.run("rt:action:invoke", "aioResult")
    # When the last activation and its result are read
    record = json.loads(aio.run("rt:activation:get", "--last").stdout)
    result = json.loads(aio.run("rt:activation:result", "--last").stdout)
    # Then both describe that invocation
    assert record["name"] == "aioResult"
    assert record["response"]["result"] == {"hello": "world"}
    assert result["result"] == {"hello": "world"}
    assert result["success"] is True
    aio.run("rt:action:delete", "aioResult")


def test_packages_and_sequences(aio: Aio) -> None:
    # Given a package holding an action, and a sequence of a top-level and that action
    aio.run("rt:package:create", "aioPkg")
    aio.run("rt:action:create", "aioPkg/inner", "hello.js")
    aio.run("rt:action:create", "aioFirst", "hello.js")
    aio.run("rt:action:create", "aioSeq", "--sequence", "aioFirst,aioPkg/inner")
    # When the sequence is invoked
    result = aio.run("rt:action:invoke", "aioSeq", "--result")
    # Then it answers the last step's result
    assert json.loads(result.stdout) == {"hello": "world"}
    # And the package lists and shows its action
    assert "aioPkg" in aio.run("rt:package:list").stdout
    assert '"name": "inner"' in aio.run("rt:package:get", "aioPkg").stdout
    # And everything deletes
    for name in ("aioSeq", "aioFirst", "aioPkg/inner"):
        aio.run("rt:action:delete", name)
    aio.run("rt:package:delete", "aioPkg")
    assert "aioPkg" not in aio.run("rt:package:list").stdout


def test_triggers_and_rules(aio: Aio, server: Standalone) -> None:
    # Given a trigger and a rule to an action
    aio.run("rt:action:create", "aioRuled", "hello.js")
    aio.run("rt:trigger:create", "aioTrigger")
    aio.run("rt:rule:create", "aioRule", "aioTrigger", "aioRuled")
    assert "aioRule" in aio.run("rt:rule:list").stdout
    assert "aioTrigger" in aio.run("rt:trigger:list").stdout
    # When the trigger fires
    fired = json.loads(aio.run("rt:trigger:fire", "aioTrigger", "--param", "a", "b").stdout)
    # Then the fire has an activation id, and the rule's action ran
    assert ACTIVATION_ID.fullmatch(fired["activationId"])
    with server.client() as client:
        record = client.get(f"/namespaces/_/activations/{fired['activationId']}").json()
    assert record["name"] == "aioTrigger"
    # And the activation list shows the fire as a trigger's, not an action of kind "??"
    listed = aio.run("rt:activation:list", "aioTrigger").stdout
    [row] = [line for line in listed.splitlines() if fired["activationId"] in line]
    assert "trigger" in row.split(), listed
    assert "??" not in listed and "undefined" not in listed, listed
    # And disabling and enabling the rule prints OpenWhisk's "OK", not an empty buffer
    disabled = aio.run("rt:rule:disable", "aioRule").stdout
    assert disabled.strip() == 'Rules Disabled! "OK"', disabled  # aio's own wording
    enabled = aio.run("rt:rule:enable", "aioRule").stdout
    assert enabled.strip() == 'Rule Enabled "OK"', enabled
    # And a disabled rule shows as inactive
    aio.run("rt:rule:disable", "aioRule")
    assert '"status": "inactive"' in aio.run("rt:rule:get", "aioRule").stdout
    # And everything deletes
    aio.run("rt:rule:delete", "aioRule")
    aio.run("rt:trigger:delete", "aioTrigger")
    aio.run("rt:action:delete", "aioRuled")


def test_log_forwarding_is_the_platforms_own(aio: Aio) -> None:
    # When aio reads the namespace's log-forwarding configuration
    got = aio.run("rt:namespace:log-forwarding:get")
    # Then it is Adobe I/O Runtime's default: the platform's own activation records
    assert "adobe_io_runtime" in got.stdout


def test_log_forwarding_to_each_destination_then_a_dead_one(
    aio: Aio, receiver: ThreadedReceiver
) -> None:
    # Runs last in the module: it leaves the receiver stopped.
    aio.run("rt:action:create", "lfLogger", "logger.js")
    setups = [
        (
            "splunk_hec",
            "rt:namespace:log-forwarding:set:splunk-hec",
            [
                *("--host", "http://127.0.0.1", "--port", str(receiver.port)),
                *("--index", "runtime", "--hec-token", SPLUNK_TOKEN),
            ],
            SPLUNK_TOKEN,
        ),
        (
            "azure_log_analytics",
            "rt:namespace:log-forwarding:set:azure-log-analytics",
            [
                *("--customer-id", AZURE_CUSTOMER_ID, "--shared-key", AZURE_SHARED_KEY),
                *("--log-type", AZURE_LOG_TYPE),
            ],
            AZURE_SHARED_KEY,
        ),
        (
            "new_relic",
            "rt:namespace:log-forwarding:set:new-relic",
            ["--base-uri", f"{receiver.url}/log/v1", "--license-key", NEW_RELIC_KEY],
            NEW_RELIC_KEY,
        ),
    ]
    for destination, command, flags, secret in setups:
        # When aio sets the destination
        done = aio.run(command, *flags)
        assert f"Log forwarding was set to {destination}" in done.stdout
        # Then aio shows it, without the secret
        shown = aio.run("rt:namespace:log-forwarding:get").stdout
        assert destination in shown and secret not in shown
        # And an invocation's logs reach the receiver, which checked the credentials
        mark = f"aio-{destination}"
        aio.run("rt:action:invoke", "lfLogger", "--result", "-p", "mark", mark)

        def logged(d: str, e: dict[str, Any], m: str = mark, t: str = destination) -> bool:
            return d == t and m in str(e)

        found = receiver.wait_for(logged)
        assert "lfLogger" in str(found[0][1])
        errors = aio.run("rt:namespace:log-forwarding:errors").stdout
        assert (
            f"No log forwarding errors for the last configured destination '{destination}'"
            in errors
        )

    # When the destination goes away
    receiver.stop()
    # Then invocations still answer
    invoked = aio.run("rt:action:invoke", "lfLogger", "--result", "-p", "mark", "dead")
    assert json.loads(invoked.stdout) == {}

    # And aio shows the lines that could not be delivered
    def reported() -> str | None:
        out = aio.run("rt:namespace:log-forwarding:errors").stdout
        return out if "Log forwarding errors" in out else None

    out = poll(reported, 90.0, 0.5, "log forwarding errors")
    assert "dropped after 3 attempts" in out
    # And the namespace goes back to the platform's own records
    aio.run("rt:namespace:log-forwarding:set:adobe-io-runtime")
    assert "adobe_io_runtime" in aio.run("rt:namespace:log-forwarding:get").stdout
