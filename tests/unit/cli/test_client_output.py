"""What the client prints: wsk's plain text off a terminal, rich on one, JSON with --json."""

from __future__ import annotations

import io
import json

from squall.cli.client.output import Output


class Terminal(io.StringIO):
    """A stream that says it is a terminal (as a pty would)."""

    def isatty(self) -> bool:
        return True


ROWS = [["/guest/a", "private", "nodejs:20"], ["/guest/longer", "shared", "python:3.11"]]


def test_plain_text_is_wsk_s() -> None:
    stream = io.StringIO()
    out = Output(stream=stream)

    out.ok("created action a")
    out.table("actions", ROWS)
    out.table("activations", [["1", "x"]], headers=["Datetime", "Activation ID"])

    assert stream.getvalue() == (
        "ok: created action a\n"
        "actions\n"
        "/guest/a      private nodejs:20\n"
        "/guest/longer shared  python:3.11\n"
        "activations\n"
        "Datetime Activation ID\n"
        "1        x\n"
    )


def test_json_mode_prints_only_json() -> None:
    stream = io.StringIO()
    out = Output(json_mode=True, stream=stream)

    out.ok("created action a")
    out.text("a line")
    out.table("actions", ROWS, raw=[{"name": "a"}])

    assert json.loads(stream.getvalue()) == [{"name": "a"}]


def test_a_terminal_gets_colours_and_drawn_tables() -> None:
    stream = Terminal()
    out = Output(stream=stream)

    out.ok("created action a")
    out.table("rules", [["/guest/r", "private", "active"]])

    text = stream.getvalue()
    assert "\x1b[32mok:\x1b[0m created action a" in text
    assert "\x1b[32mactive\x1b[0m" in text


def test_a_table_too_wide_for_the_terminal_is_printed_plain() -> None:
    stream = Terminal()
    out = Output(stream=stream)
    wide = [["x" * 200, "y"]]

    out.table("activations", wide)

    assert f"{'x' * 200} y\n" in stream.getvalue()
