"""``squall dev FILE``: edit an action locally, see it run on every save.

On start and on every save of FILE, the action is created or updated on the target
platform (the local ``squall standalone`` by default); given ``-p`` parameters (or
``--invoke``), it is then invoked blocking with them and its result and logs are printed.
A save that the platform refuses (a syntax error is only found when it runs, but an
unknown kind or an oversized file is refused at once) prints the error and keeps watching.
Ctrl-C (or SIGTERM) stops it cleanly.

Watching polls the file's modification time, size and inode every ``--interval`` seconds
(no file-system notification library needed; an editor that saves by renaming a new file
over the old one is seen too), and deploys only when the content really changed.

Where it deploys: ``--apihost`` / ``--auth``, else the wskprops file given with
``--wskprops``, else ``$SQUALL_HOME/wskprops`` (written by ``squall standalone``), else
``~/.wskprops`` (``$WSK_CONFIG_FILE``), like ``wsk``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

import click
import httpx

KINDS_BY_SUFFIX = {".js": "nodejs:default", ".mjs": "nodejs:default", ".py": "python:default"}
HTTP_TIMEOUT_S = 75.0  # above the platform's 60 s blocking wait


class Stop(Exception):
    """SIGTERM, turned into a clean exit like Ctrl-C."""


@dataclass(frozen=True)
class Target:
    api_host: str
    auth: str
    namespace: str = "_"


def read_props(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.strip().startswith("#"):
            props[key.strip()] = value.strip()
    return props


def find_target(api_host: str | None, auth: str | None, wskprops: Path | None) -> Target:
    """The platform to deploy to; see the module docstring for the order."""
    candidates: list[Path] = []
    if wskprops is not None:
        candidates.append(wskprops)
    else:
        candidates.append(Path(os.environ.get("SQUALL_HOME", ".squall")) / "wskprops")
        candidates.append(Path(os.environ.get("WSK_CONFIG_FILE", Path.home() / ".wskprops")))
    props: dict[str, str] = {}
    for candidate in candidates:
        if candidate.is_file():
            props = read_props(candidate)
            break
    host = api_host or props.get("APIHOST")
    key = auth or props.get("AUTH")
    if not host or not key:
        tried = ", ".join(str(c) for c in candidates)
        raise click.UsageError(
            f"no API host and key: give --apihost and --auth, or a wskprops file (tried {tried})"
        )
    if "://" not in host:
        host = f"https://{host}"
    return Target(host.rstrip("/"), key, props.get("NAMESPACE") or "_")


def parse_params(pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """``-p key value``: the value as JSON when it parses (numbers, objects), else the
    string itself, as ``wsk -p`` does."""
    params: dict[str, Any] = {}
    for key, raw in pairs:
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


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
        client: httpx.Client,
        path: Path,
        name: str,
        kind: str,
        params: dict[str, Any] | None,
    ) -> None:
        self._client = client
        self._path = path
        self._name = name
        self._kind = kind
        self._params = params
        self._deployed: bytes | None = None  # digest of the code deployed last

    def _url(self) -> str:
        return f"/api/v1/namespaces/_/actions/{quote(self._name, safe='/')}"

    def refresh(self) -> bool:
        """Deploy (and invoke) if the file's content changed since the last deploy."""
        try:
            code = self._path.read_bytes()
        except FileNotFoundError:
            return False
        digest = hashlib.sha256(code).digest()
        if digest == self._deployed:
            return False
        self._deployed = digest
        if self.deploy(code.decode("utf-8", errors="replace")) and self._params is not None:
            self.invoke()
        return True

    def deploy(self, code: str) -> bool:
        body = {"exec": {"kind": self._kind, "code": code}}
        try:
            answer = self._client.put(self._url(), params={"overwrite": "true"}, json=body)
        except httpx.HTTPError as error:
            _say(f"cannot reach the platform: {error}", err=True)
            return False
        if answer.status_code != 200:
            _say(f"update of {self._name} refused: {_error(answer)}", err=True)
            return False
        action = answer.json()
        version = action.get("version", "?")
        kind = action.get("exec", {}).get("kind", self._kind)
        _say(f"{time.strftime('%H:%M:%S')} updated {self._name} (version {version}, {kind})")
        return True

    def invoke(self) -> None:
        try:
            answer = self._client.post(
                self._url(), params={"blocking": "true"}, json=self._params or {}
            )
        except httpx.HTTPError as error:
            _say(f"cannot reach the platform: {error}", err=True)
            return
        if answer.status_code == 202:
            _say(f"still running after the blocking wait: {answer.json().get('activationId')}")
            return
        record = answer.json()
        if "response" not in record:
            _say(f"invoke of {self._name} refused: {_error(answer)}", err=True)
            return
        response = record["response"]
        status = response.get("status", "?")
        activation, duration = record.get("activationId", "?"), record.get("duration", "?")
        _say(f"activation {activation} ({status}, {duration} ms)")
        _say(json.dumps(response.get("result", {}), indent=2, ensure_ascii=False))
        logs = record.get("logs") or []
        if logs:
            _say("logs:")
            for line in logs:
                _say(f"  {line}")


def _error(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return f"{answer.status_code} {answer.text[:200]}"
    if isinstance(body, dict) and "error" in body:
        return f"{answer.status_code} {body['error']}"
    return f"{answer.status_code} {body}"


def _say(text: str, err: bool = False) -> None:
    click.echo(text, err=err)
    # Output is read as it comes (a terminal, or a test reading the pipe).
    (sys.stderr if err else sys.stdout).flush()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stop()


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "-p",
    "--param",
    "params",
    type=(str, str),
    multiple=True,
    metavar="KEY VALUE",
    help="Invoke with this parameter after each update (the value as JSON if it parses).",
)
@click.option("--invoke", is_flag=True, help="Invoke after each update, also without -p.")
@click.option("--name", default=None, help="Action name (default: the file's name without suffix).")
@click.option("--kind", default=None, help="Runtime kind (default: from the file's suffix).")
@click.option("--apihost", default=None, help="API host (default: from wskprops).")
@click.option("-u", "--auth", default=None, help="uuid:key (default: from wskprops).")
@click.option(
    "--wskprops",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="wskprops file to read (default $SQUALL_HOME/wskprops, then ~/.wskprops).",
)
@click.option("--interval", type=click.FloatRange(min=0.01), default=0.25, help="Poll seconds.")
@click.option("--once", is_flag=True, help="Update (and invoke) once, then exit.")
def dev(
    file: Path,
    params: tuple[tuple[str, str], ...],
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
    the -p parameters, show its result and logs. Ctrl-C stops."""
    kind = kind or KINDS_BY_SUFFIX.get(file.suffix)
    if kind is None:
        raise click.UsageError(f"cannot tell the kind of {file.name}: give --kind")
    target = find_target(apihost, auth, wskprops)
    uuid, _, key = target.auth.partition(":")
    with httpx.Client(
        base_url=target.api_host,
        auth=(uuid, key),
        timeout=HTTP_TIMEOUT_S,
        # Loopback (the standalone) never goes through a proxy; anything else may.
        trust_env=not target.api_host.startswith(("http://127.", "http://localhost")),
    ) as client:
        action = name or file.stem
        session = Session(
            client, file, action, kind, parse_params(params) if params or invoke else None
        )
        if once:
            session.refresh()
            return
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        _say(f"watching {file} as {action} on {target.api_host} (Ctrl-C to stop)")
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
