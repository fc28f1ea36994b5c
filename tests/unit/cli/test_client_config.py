"""Where the client commands (and ``squall dev``) find their API host and key: flags,
then the wskprops file, then the standalone's file only when no file was named."""

from __future__ import annotations

from pathlib import Path

import pytest

from squall.cli.client import exits
from squall.cli.client.config import resolve_config, write_props
from squall.cli.client.errors import ClientError

STANDALONE = {"APIHOST": "127.0.0.1:3233", "AUTH": "guest:key", "NAMESPACE": "guest"}


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An empty user home and a squall home holding the standalone's wskprops."""
    user, squall = tmp_path / "user", tmp_path / "squall"
    user.mkdir()
    write_props(squall / "wskprops", STANDALONE)
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.setenv("SQUALL_HOME", str(squall))
    monkeypatch.delenv("WSK_CONFIG_FILE", raising=False)
    return user, squall


def test_the_standalone_file_serves_when_the_user_has_none(homes: tuple[Path, Path]) -> None:
    config = resolve_config()
    assert (config.apihost, config.auth, config.namespace) == (
        "http://127.0.0.1:3233",
        "guest:key",
        "guest",
    )


def test_the_user_file_comes_first_and_flags_before_it(homes: tuple[Path, Path]) -> None:
    user, _ = homes
    write_props(user / ".wskprops", {"APIHOST": "https://ow.example", "AUTH": "me:secret"})

    assert resolve_config().apihost == "https://ow.example"
    assert resolve_config().namespace == "_"  # not the standalone's: the user's file is whole
    assert resolve_config(auth="other:key").auth == "other:key"


@pytest.mark.parametrize("via", ["props_file", "WSK_CONFIG_FILE"])
def test_a_named_file_has_no_standalone_behind_it(
    homes: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, via: str
) -> None:
    named = tmp_path / "named"
    write_props(named, {"APIHOST": "https://ow.example"})
    if via == "WSK_CONFIG_FILE":
        monkeypatch.setenv("WSK_CONFIG_FILE", str(named))

    with pytest.raises(ClientError) as caught:
        resolve_config(props_file=named if via == "props_file" else None)
    assert "authorization key is not set" in caught.value.format_message()
    assert caught.value.exit_code == exits.USAGE
