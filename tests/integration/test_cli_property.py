"""``squall property`` on a wskprops file, ``squall namespace``, and what the client says
when it has no configuration or nothing answers."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from _cli_client import Wsk
from _standalone import Standalone, free_port

from squall.cli.client import exits

pytestmark = pytest.mark.integration


@pytest.fixture
def empty(tmp_path: Path) -> Wsk:
    """A client whose WSK_CONFIG_FILE does not exist yet."""
    return Wsk(tmp_path, tmp_path / "props" / "wskprops")


def test_set_get_unset(empty: Wsk, standalone: Standalone) -> None:
    # Given no properties, commands say what is missing
    missing = empty.run("namespace", "list", rc=exits.USAGE)
    assert "An API host must be provided" in missing.err
    assert "squall property set --apihost" in missing.err

    # When host and key are set
    host = standalone.api_host.removeprefix("http://")  # without scheme, as wsk accepts
    done = empty.run("property", "set", "--apihost", host, "--auth", standalone.auth)

    # Then wsk's confirmations are printed and the file holds them, for its owner only
    assert done.out.splitlines() == [
        "ok: whisk auth set. Run 'squall property get --auth' to see the new value.",
        f"ok: whisk API host set to {host}",
    ]
    assert empty.props.read_text().splitlines() == [f"AUTH={standalone.auth}", f"APIHOST={host}"]
    assert stat.S_IMODE(empty.props.stat().st_mode) == 0o600

    # And get shows them, the commands work with them
    shown = empty.json("property", "get")
    assert shown["whisk API host"] == host and shown["whisk namespace"] == "_"
    assert empty.run("property", "get", "--auth").out.split() == [
        "whisk",
        "auth",
        standalone.auth,
    ]
    assert empty.run("namespace", "list").out.splitlines() == ["namespaces", "guest"]
    assert json.loads(empty.run("namespace", "get", "--json").out).keys() == {
        "packages",
        "actions",
        "triggers",
        "rules",
    }

    # When the key is unset, the host is kept and the key is missing again
    unset = empty.run("property", "unset", "--auth")
    assert unset.out == "ok: whisk auth unset; there is no default value that can be used.\n"
    assert empty.props.read_text() == f"APIHOST={host}\n"
    assert "authorization key is not set" in empty.run("namespace", "list", rc=exits.USAGE).err


def test_flags_override_the_file(empty: Wsk, standalone: Standalone) -> None:
    empty.run("property", "set", "--apihost", "127.0.0.1:1", "--auth", "wrong:key")

    listed = empty.run(
        "namespace", "list", "--apihost", standalone.api_host, "--auth", standalone.auth
    )

    assert listed.out.splitlines() == ["namespaces", "guest"]


def test_nothing_listening(empty: Wsk, standalone: Standalone) -> None:
    port = free_port()
    refused = empty.run(
        "action", "list", "--apihost", f"127.0.0.1:{port}", "--auth", standalone.auth,
        rc=exits.NETWORK,
    )  # fmt: skip
    assert f"cannot connect to http://127.0.0.1:{port}" in refused.err
    assert "squall standalone" in refused.err
    assert "Traceback" not in refused.err


def test_a_wrong_key(empty: Wsk, standalone: Standalone) -> None:
    empty.run("property", "set", "--apihost", standalone.api_host, "--auth", "nobody:nokey")

    wrong = empty.run("namespace", "list", rc=exits.UNAUTHORIZED)

    assert wrong.err.startswith(
        "error: Unable to obtain the list of available namespaces: "
        "The supplied authentication is invalid."
    )


def test_an_invalid_api_host_is_refused(empty: Wsk) -> None:
    refused = empty.run("property", "set", "--apihost", "ftp://example", rc=exits.USAGE)

    assert refused.err == "error: Invalid host address 'ftp://example'\n"
    assert not empty.props.exists()
