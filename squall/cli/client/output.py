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

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: Cells coloured on a terminal: activation outcomes and rule states.
CELL_STYLES = {
    "success": "green",
    "active": "green",
    "pending": "yellow",
    "inactive": "yellow",
    "application error": "red",
    "developer error": "red",
    "internal error": "red",
}


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
        if self._console is not None and self._fits(rows, headers):
            self._rich_table(title, rows, headers)
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

    def _fits(self, rows: Sequence[Sequence[str]], headers: Sequence[str] | None) -> bool:
        """Whether a drawn table shows every cell whole on this terminal; when it would
        not, the plain columns are printed instead (the terminal wraps, nothing is cut)."""
        assert self._console is not None
        lines = [*([headers] if headers else []), *rows]
        if not lines:
            return True
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        return sum(widths) + 3 * len(widths) <= self._console.width

    def _rich_table(
        self, title: str, rows: Sequence[Sequence[str]], headers: Sequence[str] | None
    ) -> None:
        assert self._console is not None
        if not rows:
            self._console.print(f"[italic]{title}[/italic]", markup=True)
            return
        table = Table(
            title=title,
            title_justify="left",
            show_header=headers is not None,
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for header in headers or [""] * len(rows[0]):
            table.add_column(header, no_wrap=True)
        for row in rows:
            table.add_row(*(Text(cell, style=CELL_STYLES.get(cell, "")) for cell in row))
        self._console.print(table)
