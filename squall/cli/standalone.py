"""``squall standalone``: the whole platform in one process.

SQLite store under ``--home``, the in-process bus, one invoker with the process sandbox,
the standard catalog and the built-in alarms provider in ``/whisk.system``, and the REST
API on uvicorn. At start-up, what a crash left unfinished in the store runs again if it
never started, or ends with an error if it had (``controller/restart.py``). It is built
by ``squall.system`` like a cluster's members, only with other providers; this module
adds the guest's credentials (``wskprops``) and serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp

from squall.bus.contracts import MessagingProvider
from squall.cli.serving import serve_app
from squall.config import Settings
from squall.controller.core import Controller
from squall.errors import ConfigError, ContainerError, NotFound
from squall.invoker.service import Invoker
from squall.providers import STANDALONE
from squall.sandbox.backends import BackendRouter
from squall.store.contracts import AuthStore, Store
from squall.system import System, start

log = logging.getLogger("squall.standalone")

GUEST = "guest"


def read_wskprops(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a wsk property file (missing file → empty)."""
    props: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return props
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            props[key.strip()] = value.strip()
    return props


def write_wskprops(path: Path, api_host: str, auth: str, namespace: str) -> None:
    """Write the credentials file readable by its owner only (it holds the key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"APIHOST={api_host}\nAUTH={auth}\nNAMESPACE={namespace}\n")
    os.replace(tmp, path)


async def guest_credentials(auth: AuthStore, wskprops: Path) -> str:
    """The guest's ``uuid:key``: created on first start, then read back from ``wskprops``.

    The store keeps only a hash of the key, so the key lives in the owner-only wskprops
    file; if that file is gone or no longer matches, the guest gets a fresh key.
    """
    known = read_wskprops(wskprops).get("AUTH", "")
    uuid, _, key = known.partition(":")
    if uuid and key and await auth.authenticate(uuid, key) is not None:
        return known
    try:
        await auth.get_subject(GUEST)
        subject = await auth.create_subject(GUEST, rotate=True)
    except NotFound:
        subject = await auth.create_subject(GUEST)
    return subject.auth


@dataclass
class Standalone:
    """The whole platform in this process (``squall.system`` with its standalone
    providers), and the guest's credentials."""

    system: System
    guest_auth: str

    @classmethod
    async def start(cls, settings: Settings) -> Standalone:
        system = await start(settings, STANDALONE)
        try:
            auth = await guest_credentials(system.store.auth, settings.home / "wskprops")
            write_wskprops(settings.home / "wskprops", settings.effective_api_host, auth, GUEST)
        except BaseException:
            await system.close()
            raise
        return cls(system, auth)

    async def close(self) -> None:
        """Finish or record in-flight activations, kill every runtime, close the store."""
        await self.system.close()

    @property
    def settings(self) -> Settings:
        return self.system.settings

    @property
    def app(self) -> ASGIApp:
        return self.system.app

    @property
    def store(self) -> Store:
        return self.system.store

    @property
    def bus(self) -> MessagingProvider:
        return self.system.bus

    @property
    def controller(self) -> Controller:
        assert self.system.controller is not None
        return self.system.controller

    @property
    def invoker(self) -> Invoker:
        assert self.system.invoker is not None
        return self.system.invoker

    @property
    def factory(self) -> BackendRouter:
        assert self.system.factory is not None
        return self.system.factory


async def serve(settings: Settings) -> None:
    try:
        system = await Standalone.start(settings)
    except (ContainerError, ConfigError) as ex:  # no namespaces, a wrong interpreter, ...
        raise SystemExit(f"squall: {ex.message}") from None
    wskprops = (settings.home / "wskprops").resolve()
    print(f"APIHOST={settings.effective_api_host}", flush=True)
    print(f"AUTH={system.guest_auth}", flush=True)
    print("NAMESPACE=guest", flush=True)
    print(f"# written to {wskprops}: export WSK_CONFIG_FILE={wskprops}", flush=True)
    await serve_app(system.app, settings, settings.port, close=system.close, tls=True)


def run(settings: Settings) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings))
