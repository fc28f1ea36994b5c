"""The client's one error: a message for the user and the exit code to leave with.

It is a :class:`click.ClickException`, so click prints it (``error: ...`` on stderr, red
on a terminal, as ``wsk`` does) and exits with its code — never a traceback. Errors of the
platform itself (:mod:`squall.errors`) stay on the server; the client only sees their
status and message.
"""

from __future__ import annotations

from typing import IO, Any

import click

from squall.cli.client import exits


class ClientError(click.ClickException):
    """``message`` is shown as ``error: message``; the process exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = exits.ERROR) -> None:
        super().__init__(message)
        # click declares exit_code a ClassVar, yet reads it from the instance it caught.
        setattr(self, "exit_code", exit_code)  # noqa: B010

    def show(self, file: IO[Any] | None = None) -> None:
        click.secho(f"error: {self.format_message()}", file=file, err=True, fg="red")
