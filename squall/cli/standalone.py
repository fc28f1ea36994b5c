"""``squall standalone``: the whole platform in one process.

SQLite store under ``--home``, the in-process bus, one invoker with the process sandbox,
the standard catalog and the built-in alarms provider in ``/whisk.system``, and the REST
API on uvicorn. At start-up, what a crash left unfinished in the store runs again if it
never started, or ends with an error if it had (``controller/restart.py``). The same
classes run in the cluster shape; only the providers passed in here differ.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp

from squall.bus.memory import MemoryBus
from squall.catalog.install import install_catalog
from squall.cli.serving import serve_app
from squall.config import Settings
from squall.controller.app import create_app
from squall.controller.balancer import LeanBalancer
from squall.controller.build import build_controller
from squall.controller.core import Controller
from squall.controller.restart import resume_unfinished
from squall.controller.retention import Retention
from squall.entities.kinds import use_manifest
from squall.errors import ConfigError, ContainerError, NotFound
from squall.feeds.provider import AlarmsProvider
from squall.invoker.build import build_invoker, container_factory, start_backends
from squall.invoker.service import Invoker
from squall.sandbox.backends import BackendRouter
from squall.store.contracts import AuthStore
from squall.store.sqlite import SqliteStore

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
    """A running platform: store, bus, invoker, controller and the ASGI app."""

    settings: Settings
    store: SqliteStore
    bus: MemoryBus
    invoker: Invoker
    controller: Controller
    app: ASGIApp
    guest_auth: str
    alarms: AlarmsProvider
    factory: BackendRouter
    retention: Retention

    @classmethod
    async def start(cls, settings: Settings) -> Standalone:
        settings.home.mkdir(parents=True, exist_ok=True)
        # The sandbox first: a host that cannot isolate is refused before anything opens.
        factory = container_factory(settings)
        try:
            await start_backends(settings, factory)
        except BaseException:
            await factory.close()
            raise
        use_manifest(factory.runtimes.manifest)  # the kinds GET / lists and creates accept
        store = await SqliteStore.open(settings.db_path)
        bus = MemoryBus()
        invoker = build_invoker(
            settings, factory, store.entities, store.activations, store.auth, bus, cluster=False
        )
        balancer = LeanBalancer(bus, settings.invoker_id)
        controller = build_controller(
            settings, store.entities, store.activations, store.auth, bus, balancer
        )
        controller.invokers = lambda: [{"id": f"invoker{settings.invoker_id}", "status": "healthy"}]
        alarms = AlarmsProvider(
            controller, store.schedules, min_interval_s=settings.alarms_min_interval_s
        )
        retention = Retention(store.activations, settings.activation_retention_days)
        await invoker.start()
        await controller.start()
        await install_catalog(controller.catalog)
        # The store is the durable queue: what a crash left unfinished runs (if it never
        # started) or ends (if it had) before any new request or alarm comes in.
        await resume_unfinished(controller, balancer)
        await alarms.start()
        retention.start()
        auth = await guest_credentials(store.auth, settings.home / "wskprops")
        write_wskprops(settings.home / "wskprops", settings.effective_api_host, auth, GUEST)
        app = create_app(controller, invoker.metrics)  # one /metrics for both
        return cls(settings, store, bus, invoker, controller, app, auth, alarms, factory, retention)

    async def close(self) -> None:
        """Finish or record in-flight activations, kill every runtime, close the store."""
        # No new fires from alarms once shutting down.
        await self.retention.close()
        await self.alarms.close()
        # Sequences first: their remaining steps still need the invoker.
        await self.controller.activator.close()
        await self.invoker.close()
        await self.factory.close()  # its cgroup and its lock on the containers directory
        await self.controller.close()
        await self.bus.close()
        await self.store.close()


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
