"""``squall dev FILE``: edit an action locally, see it run on every save.

On start and on every save of FILE, the action is created or updated on the target
platform (the one wskprops names, the local ``squall standalone`` if none); given ``-p``
parameters (or ``--invoke``), it is then invoked blocking with them and its result and
logs are printed.
A save that the platform refuses (a syntax error is only found when it runs, but an
unknown kind or an oversized file is refused at once) prints the error and keeps watching.
Ctrl-C (or SIGTERM) stops it cleanly.

Watching polls the file's modification time, size and inode every ``--interval`` seconds
(no file-system notification library needed; an editor that saves by renaming a new file
over the old one is seen too), and deploys only when the content really changed.

Where it deploys: as every client command (:mod:`squall.cli.client.config`): ``--apihost``
/ ``--auth``, else the wskprops file (``--wskprops``, else ``$WSK_CONFIG_FILE``, else
``~/.wskprops``), and when no file was named and that one lacks a host and key, the
``$SQUALL_HOME/wskprops`` that ``squall standalone`` writes, so ``squall dev`` works
straight after ``squall standalone``. Building the action, deploying and invoking it are
the client's :func:`~squall.cli.client.action.action_body`,
:func:`~squall.cli.client.action.put_action` and :func:`~squall.cli.client.action.invoke`
(so a ``.zip`` works too, and errors read as ``squall action update`` prints them).
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from squall.cli.client.action import action_body, put_action
from squall.cli.client.action import invoke as invoke_action
from squall.cli.client.action_exec import infer_kind
from squall.cli.client.config import resolve_config
from squall.cli.client.errors import ClientError
from squall.cli.client.http import WhiskClient
from squall.cli.client.names import QualifiedName, parse
from squall.cli.client.params import Pairs, collect, param_options


class Stop(Exception):
    """SIGTERM, turned into a clean exit like Ctrl-C."""


def _fingerprint(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:  # between an editor's delete and its rename
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class Session:
    """One action being developed: deploys FILE and invokes it."""

    def __init__(
        self,
        client: WhiskClient,
        path: Path,
        name: QualifiedName,
        kind: str | None,
        params: dict[str, Any] | None,
    ) -> None:
        self._client = client
        self._path = path
        self._name = name
        self._kind = kind
        self._params = params
        self._deployed: bytes | None = None  # digest of the exec deployed last

    def refresh(self) -> bool:
        """Deploy (and invoke) if the file's content changed since the last deploy."""
        try:
            body = action_body(self._client.namespace, self._path, kind=self._kind)
        except ClientError as error:
            if self._path.exists():  # else between an editor's delete and its rename
                _say(error.format_message(), err=True)
            return False
        # The digest of what is sent, not of a second read of the file, which may differ.
        digest = hashlib.sha256(json.dumps(body["exec"], sort_keys=True).encode()).digest()
        if digest == self._deployed:
            return False
        self._deployed = digest
        if self.deploy(body) and self._params is not None:
            self.invoke()
        return True

    def deploy(self, body: dict[str, Any]) -> bool:
        try:
            reply = put_action(self._client, self._name, body, overwrite=True)
        except ClientError as error:
            _say(error.format_message(), err=True)
            return False
        action = reply.body if isinstance(reply.body, dict) else {}
        version = action.get("version", "?")
        kind = action.get("exec", {}).get("kind", body["exec"]["kind"])
        name = self._name.name
        _say(f"{time.strftime('%H:%M:%S')} updated {name} (version {version}, {kind})")
        return True

    def invoke(self) -> None:
        try:
            reply = invoke_action(self._client, self._name, self._params, blocking=True)
        except ClientError as error:
            _say(error.format_message(), err=True)
            return
        record = reply.body if isinstance(reply.body, dict) else {}
        if reply.status == 202:
            _say(f"still running after the blocking wait: {record.get('activationId')}")
            return
        response = record.get("response")
        if not isinstance(response, dict):
            _say(f"invoke of {self._name.name} answered {reply.status}: {reply.body}", err=True)
            return
        status = response.get("status", "?")
        activation, duration = record.get("activationId", "?"), record.get("duration", "?")
        _say(f"activation {activation} ({status}, {duration} ms)")
        _say(json.dumps(response.get("result", {}), indent=2, ensure_ascii=False))
        logs = record.get("logs") or []
        if logs:
            _say("logs:")
            for line in logs:
                _say(f"  {line}")


def _say(text: str, err: bool = False) -> None:
    click.echo(text, err=err)
    # Output is read as it comes (a terminal, or a test reading the pipe).
    (sys.stderr if err else sys.stdout).flush()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stop()


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@param_options
@click.option("--invoke", is_flag=True, help="Invoke after each update, also without -p/-P.")
@click.option("--name", default=None, help="Action name (default: the file's name without suffix).")
@click.option("--kind", default=None, help="Runtime kind (default: from the file's suffix).")
@click.option("--apihost", default=None, help="API host (default: from wskprops).")
@click.option("-u", "--auth", default=None, help="uuid:key (default: from wskprops).")
@click.option(
    "--wskprops",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="wskprops file to read (default $WSK_CONFIG_FILE, ~/.wskprops, $SQUALL_HOME/wskprops).",
)
@click.option("--interval", type=click.FloatRange(min=0.01), default=0.25, help="Poll seconds.")
@click.option("--once", is_flag=True, help="Update (and invoke) once, then exit.")
def dev(
    file: Path,
    param: Pairs,
    param_file: Path | None,
    invoke: bool,
    name: str | None,
    kind: str | None,
    apihost: str | None,
    auth: str | None,
    wskprops: Path | None,
    interval: float,
    once: bool,
) -> None:
    """Run FILE as an action with hot reload: update it on every save, invoke it with
    the -p/-P parameters, show its result and logs. Ctrl-C stops."""
    if kind is None:
        infer_kind(file)  # refuse an unknown suffix before watching
    config = resolve_config(apihost, auth, props_file=wskprops)
    params = collect(param, param_file) if param or param_file or invoke else None
    with WhiskClient(config) as client:
        action = parse(name or file.stem, config.namespace)
        session = Session(client, file, action, kind, params)
        if once:
            session.refresh()
            return
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        _say(f"watching {file} as {action.name} on {config.apihost} (Ctrl-C to stop)")
        try:
            seen = _fingerprint(file)
            session.refresh()
            while True:
                time.sleep(interval)
                now = _fingerprint(file)
                if now is not None and now != seen:
                    seen = now
                    session.refresh()
        except (KeyboardInterrupt, Stop):
            _say("stopped")
        finally:
            signal.signal(signal.SIGTERM, previous)
