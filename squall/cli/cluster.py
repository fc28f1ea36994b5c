"""``squall controller``, ``squall invoker`` and ``squall cluster up``: the cluster shape.

A controller serves the REST API over the shared store (PostgreSQL) and bus (NATS) and
routes activations with the sharding balancer; an invoker runs them and serves only
``/ping`` (and metrics) on a small HTTP port of its own. Both read their settings from
``SQUALL_*`` variables, then flags. ``squall cluster up`` starts N controllers and M
invokers on this machine (``cli/local_cluster.py``) for development and tests.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import click
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from squall.cli.serving import serve_app
from squall.config import Settings
from squall.errors import SquallError

log = logging.getLogger("squall.cluster")


def _settings(**overrides: Any) -> Settings:
    settings = Settings.from_env(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    return settings


def _run(main: Any) -> None:
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    except SquallError as error:  # a provider that cannot be reached, a bad setting
        raise SystemExit(f"squall: {error.message}") from None


# -- controller ---------------------------------------------------------------------


async def run_controller(settings: Settings) -> None:
    from squall.bus.factory import open_bus
    from squall.catalog.install import install_catalog
    from squall.controller.app import create_app
    from squall.controller.build import build_controller
    from squall.controller.cluster import CACHE_TTL_S, ClusterControl
    from squall.controller.health import InvokerRegistry
    from squall.controller.retention import Retention
    from squall.controller.sharding import ShardingBalancer
    from squall.entities.kinds import use_manifest
    from squall.feeds.provider import AlarmsProvider
    from squall.sandbox.interpreters import load_manifest
    from squall.store.factory import open_store

    # A controller offers every kind of the manifest, as OpenWhisk's does: the invokers,
    # on other machines, check their interpreters when they start.
    use_manifest(load_manifest(settings.runtimes_manifest or None))
    store = await open_store(settings)
    bus = await open_bus(settings)
    registry = InvokerRegistry(bus, settings)
    balancer = ShardingBalancer(bus, registry, settings)
    controller = build_controller(
        settings,
        store.entities,
        store.activations,
        store.auth,
        bus,
        balancer,
        cache_ttl_s=CACHE_TTL_S,
    )
    controller.waiters.add_listener(balancer.on_completion)
    controller.invokers = lambda: [
        {**s.to_json(), "id": f"invoker{s.id}"} for s in registry.ordered()
    ]
    control = ClusterControl(controller, bus, registry, balancer)
    alarms = AlarmsProvider(
        controller, store.schedules, min_interval_s=settings.alarms_min_interval_s
    )
    retention = Retention(store.activations, settings.activation_retention_days)
    try:
        await controller.start()
        await control.start()
        await install_catalog(controller.catalog)
        await alarms.start()
        retention.start()
        log.info("controller %s on %s:%d", settings.controller_id, settings.host, settings.port)
        await serve_app(create_app(controller), settings, settings.port)
    finally:
        await retention.close()
        await alarms.close()
        await controller.activator.close()
        await control.close()
        await controller.close()
        await bus.close()
        await store.close()


@click.command()
@click.option("--id", "controller_id", default=None, help="This controller's id (default 0).")
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 3233).")
@click.option("--store", "store_url", default=None, help="postgresql:// URL of the store.")
@click.option("--bus", "bus_url", default=None, help="nats:// URL of the bus.")
@click.option("--controllers", type=int, default=None, help="Controllers in the cluster.")
@click.option("--api-host", default=None, help="URL clients use to reach the API.")
@click.option("--log-level", default=None, help="debug, info, warning, error.")
def controller(
    controller_id: str | None,
    host: str | None,
    port: int | None,
    store_url: str | None,
    bus_url: str | None,
    controllers: int | None,
    api_host: str | None,
    log_level: str | None,
) -> None:
    """Run one controller of a cluster (REST API; PostgreSQL store, NATS bus)."""
    settings = _settings(
        controller_id=controller_id,
        host=host,
        port=port,
        store_url=store_url,
        bus_url=bus_url,
        cluster_controllers=controllers,
        api_host=api_host,
        log_level=log_level,
    )
    _run(run_controller(settings))


# -- invoker ------------------------------------------------------------------------


def invoker_app(invoker: Any) -> Starlette:
    """The invoker's own small HTTP face: ``/ping`` (its id and containers) and
    ``/metrics`` (its Prometheus families)."""
    from squall.metrics.exposition import metrics_routes

    async def ping(request: Request) -> Response:
        pool = invoker.pool
        return JSONResponse(
            {
                "invoker": invoker.id,
                "userMemoryMb": pool.capacity_mb,
                "usedMb": pool.used_mb,
                "containers": len(pool.containers()),
                "activations": invoker.taken,
            }
        )

    return Starlette(
        routes=[Route("/ping", ping, methods=["GET"]), *metrics_routes(invoker.metrics)]
    )


async def run_invoker(settings: Settings, port: int) -> None:
    from squall.bus.factory import open_bus
    from squall.errors import ConfigError, ContainerError
    from squall.invoker.build import build_invoker, container_factory, start_backends
    from squall.store.factory import open_store

    settings.home.mkdir(parents=True, exist_ok=True)
    try:
        factory = container_factory(settings)
    except ContainerError as error:
        raise SystemExit(f"squall: {error.message}") from None
    try:
        await start_backends(settings, factory)
    except ContainerError as error:
        await factory.close()
        raise SystemExit(f"squall: {error.message}") from None
    store = await open_store(settings)
    bus = await open_bus(settings)
    try:
        invoker = build_invoker(
            settings, factory, store.entities, store.activations, store.auth, bus, cluster=True
        )
    except ConfigError as error:
        await factory.close()
        await bus.close()
        await store.close()
        raise SystemExit(f"squall: {error.message}") from None
    try:
        await invoker.start()
        log.info("invoker %s (%d MB)", settings.invoker_id, settings.user_memory_mb)
        await serve_app(invoker_app(invoker), settings, port)
    finally:
        await invoker.close()
        await factory.close()
        await bus.close()
        await store.close()


@click.command()
@click.option("--id", "invoker_id", default=None, help="This invoker's id (default 0).")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory: its containers (default $SQUALL_HOME or ./.squall).",
)
@click.option("--host", default=None, help="Address of its /ping port (default 127.0.0.1).")
@click.option("--port", type=int, default=0, help="Port of /ping (default: any free port).")
@click.option("--store", "store_url", default=None, help="postgresql:// URL of the store.")
@click.option("--bus", "bus_url", default=None, help="nats:// URL of the bus.")
@click.option("--user-memory", type=int, default=None, help="Capacity in MB.")
@click.option("--keep-warm", type=float, default=None, help="Seconds idle containers live.")
@click.option("--api-host", default=None, help="URL actions use to reach the API.")
@click.option("--log-level", default=None, help="debug, info, warning, error.")
@click.option(
    "--sandbox-network",
    type=click.Choice(["egress", "none"]),
    default=None,
    help="Network of namespaces without their own limit: egress (default) or none.",
)
@click.option("--cgroup-root", default=None, help="Cgroup of the containers (default squall).")
@click.option(
    "--unsafe-no-isolation",
    is_flag=True,
    default=None,
    help="Run actions as plain processes, without namespaces or cgroups (development only).",
)
def invoker(
    invoker_id: str | None,
    home: Path | None,
    host: str | None,
    port: int,
    store_url: str | None,
    bus_url: str | None,
    user_memory: int | None,
    keep_warm: float | None,
    api_host: str | None,
    log_level: str | None,
    sandbox_network: str | None,
    cgroup_root: str | None,
    unsafe_no_isolation: bool | None,
) -> None:
    """Run one invoker of a cluster (actions in sandboxes; PostgreSQL store, NATS bus)."""
    settings = _settings(
        invoker_id=invoker_id,
        home=home,
        host=host,
        store_url=store_url,
        bus_url=bus_url,
        user_memory_mb=user_memory,
        keep_warm_s=keep_warm,
        api_host=api_host,
        log_level=log_level,
        sandbox_network=sandbox_network,
        cgroup_root=cgroup_root,
        unsafe_no_isolation=unsafe_no_isolation,
    )
    _run(run_invoker(settings, port))


# -- cluster up ---------------------------------------------------------------------


@click.group()
def cluster() -> None:
    """A cluster on this machine, for development and tests."""


@cluster.command("up")
@click.option("--controllers", type=int, default=2, show_default=True)
@click.option("--invokers", type=int, default=2, show_default=True)
@click.option("--store", "store_url", required=True, help="postgresql:// URL of the store.")
@click.option("--bus", "bus_url", default="nats://127.0.0.1:4222", show_default=True)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".squall-cluster"),
    show_default=True,
    help="State directory: logs, invokers' containers, wskprops.",
)
@click.option("--port", type=int, default=3233, show_default=True, help="First controller's.")
@click.option("--user-memory", type=int, default=None, help="Each invoker's capacity in MB.")
@click.option("--unsafe-no-isolation", is_flag=True, default=False)
def up(
    controllers: int,
    invokers: int,
    store_url: str,
    bus_url: str,
    home: Path,
    port: int,
    user_memory: int | None,
    unsafe_no_isolation: bool,
) -> None:
    """Start CONTROLLERS controllers and INVOKERS invokers; stop them all on Ctrl-C."""
    from squall.cli.local_cluster import LocalCluster

    extra: dict[str, str] = {}
    if user_memory is not None:
        extra["SQUALL_USER_MEMORY_MB"] = str(user_memory)
    if unsafe_no_isolation:
        extra["SQUALL_UNSAFE_NO_ISOLATION"] = "1"
    local = LocalCluster(
        home.resolve(),
        store_url=store_url,
        bus_url=bus_url,
        controllers=controllers,
        invokers=invokers,
        base_port=port,
        env=extra,
    )

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        local.start()
        for line in local.describe():
            click.echo(line)
        local.wait()
    except KeyboardInterrupt:
        pass
    finally:
        local.close()
