"""What the client commands print.

On a terminal: ``ok:`` in green, JSON highlighted and tables drawn by rich. Otherwise
(a pipe, a file, a test): the plain text ``wsk`` prints, so scripts that parse ``wsk``
output can parse ours. With ``--json`` a command prints only JSON (the server's answer),
nothing else, on stdout. Errors go to stderr (:class:`~squall.cli.client.errors.ClientError`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table


class Output:
    """Where one command's results go (stdout unless ``stream`` is given)."""

    def __init__(self, json_mode: bool = False, stream: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self._stream = stream or sys.stdout
        self.tty = self._stream.isatty()
        self._console = Console(file=self._stream, highlight=False) if self.tty else None

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def ok(self, message: str) -> None:
        """``ok: message``; nothing in JSON mode."""
        if self.json_mode:
            return
        if self._console is not None:
            self._console.print(f"[green]ok:[/green] {message}", markup=True, soft_wrap=True)
        else:
            self._line(f"ok: {message}")

    def text(self, message: str) -> None:
        """A line of prose; nothing in JSON mode."""
        if not self.json_mode:
            self._line(message)

    def json(self, value: Any) -> None:
        """``value`` pretty-printed (highlighted on a terminal)."""
        text = json.dumps(value, indent=4, ensure_ascii=False)
        if self._console is not None and not self.json_mode:
            self._console.print_json(text, indent=4)
        else:
            self._line(text)

    def data(self, ok_message: str | None, value: Any) -> None:
        """``ok: ...`` then ``value`` (``wsk ... get``); only ``value`` in JSON mode."""
        if ok_message is not None:
            self.ok(ok_message)
        self.json(value)

    def table(
        self,
        title: str,
        rows: Sequence[Sequence[str]],
        headers: Sequence[str] | None = None,
        raw: Any = None,
    ) -> None:
        """A table; ``raw`` (the server's list) instead in JSON mode.

        Plain text is ``wsk``'s: the title, the headers when given, then one line per row
        with the columns padded to their widest cell.
        """
        if self.json_mode:
            self.json(raw if raw is not None else [list(r) for r in rows])
            return
        if self._console is not None:
            table = Table(title=title, title_justify="left", show_header=headers is not None)
            for header in headers or [""] * (len(rows[0]) if rows else 1):
                table.add_column(header)
            for row in rows:
                table.add_row(*row)
            self._console.print(table)
            return
        self._line(title)
        lines = [list(headers)] if headers else []
        lines.extend(list(r) for r in rows)
        if not lines:
            return
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        for line in lines:
            cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
            self._line(" ".join(cells).rstrip())
