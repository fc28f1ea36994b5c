"""Options every client command takes, and the :class:`Session` they resolve to.

``--apihost``, ``-u/--auth``, ``-i/--insecure``, ``--namespace`` and ``--json`` sit on
each leaf command (``squall action list --json``), as ``wsk``'s global flags may follow
the command; :func:`client_command` adds them and passes a :class:`Session` as the
first argument instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from squall.cli.client.config import ClientConfig, resolve_config
from squall.cli.client.http import WhiskClient
from squall.cli.client.names import QualifiedName, parse
from squall.cli.client.output import Output


@dataclass
class Session:
    """One command's flags: where to send requests and how to print answers."""

    out: Output
    apihost: str | None = None
    auth: str | None = None
    namespace: str | None = None
    insecure: bool = False
    _config: ClientConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> ClientConfig:
        if self._config is None:
            self._config = resolve_config(self.apihost, self.auth, self.namespace, self.insecure)
        return self._config

    def client(self) -> WhiskClient:
        return WhiskClient(self.config)

    def name(self, text: str) -> QualifiedName:
        """``text`` qualified with the configured namespace."""
        return parse(text, self.config.namespace)


def client_command(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the common options to a command function taking ``session`` first."""

    @functools.wraps(f)
    def wrapper(
        *args: Any,
        apihost: str | None,
        auth: str | None,
        insecure: bool,
        namespace: str | None,
        json_output: bool,
        **kwargs: Any,
    ) -> Any:
        session = Session(Output(json_output), apihost, auth, namespace, insecure)
        return f(session, *args, **kwargs)

    options = [
        click.option("--apihost", default=None, metavar="HOST", help="Whisk API HOST."),
        click.option("-u", "--auth", default=None, metavar="KEY", help="Authorization KEY."),
        click.option("-i", "--insecure", is_flag=True, help="Bypass certificate checking."),
        click.option("--namespace", default=None, help="Namespace (default: from wskprops, _)."),
        click.option("--json", "json_output", is_flag=True, help="Print JSON only."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
