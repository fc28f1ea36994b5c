"""The ``squall`` command.

Subcommands other than ``standalone`` live in their own modules and are imported only when
used (``LAZY``), so ``squall action invoke`` does not pay for the server's imports and the
server does not pay for the client's.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path

import click

from squall import __version__
from squall.config import Settings

# Command name -> "module:attribute" of a click command or group.
LAZY: dict[str, str] = {
    # wsk-style client (issue 6)
    "action": "squall.cli.client.action:action",
    "activation": "squall.cli.client.activation:activation",
    "api": "squall.cli.client.api:api",
    "namespace": "squall.cli.client.namespace:namespace",
    "package": "squall.cli.client.package:package",
    "property": "squall.cli.client.property:property_",
    "rule": "squall.cli.client.rule:rule",
    "trigger": "squall.cli.client.trigger:trigger",
    # operators and action authors (issue 6)
    "admin": "squall.cli.admin:admin",
    "dev": "squall.cli.dev:dev",
    "completion": "squall.cli.completion:completion",
    "runtimes": "squall.cli.runtimes:runtimes",
    # cluster shape (issue 5)
    "controller": "squall.cli.cluster:controller",
    "invoker": "squall.cli.cluster:invoker",
    "cluster": "squall.cli.cluster:cluster",
}


class LazyGroup(click.Group):
    """A group whose subcommands in ``LAZY`` are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(name for name in LAZY if self._importable(name))
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in LAZY:
            return command
        module_name, attribute = LAZY[cmd_name].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and module_name.startswith(error.name):
                return None  # not built (yet): the command does not exist
            raise
        found = getattr(module, attribute)
        assert isinstance(found, click.Command)
        return found

    @staticmethod
    def _importable(name: str) -> bool:
        try:
            return importlib.util.find_spec(LAZY[name].split(":")[0]) is not None
        except ModuleNotFoundError:  # its parent package is not there either
            return False


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="squall")
def main() -> None:
    """Squall: an OpenWhisk-compatible function-as-a-service platform."""


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 3233).")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory (default $SQUALL_HOME or ./.squall).",
)
@click.option("--api-host", default=None, help="URL clients use to reach the API.")
@click.option("--user-memory", type=int, default=None, help="Invoker capacity in MB.")
@click.option("--keep-warm", type=float, default=None, help="Seconds idle containers live.")
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
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Serve https with this PEM certificate (chain); needs --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The private key of --tls-cert (PEM).",
)
def standalone(
    host: str | None,
    port: int | None,
    home: Path | None,
    api_host: str | None,
    user_memory: int | None,
    keep_warm: float | None,
    log_level: str | None,
    sandbox_network: str | None,
    cgroup_root: str | None,
    unsafe_no_isolation: bool | None,
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """Run the whole platform in one process (SQLite, in-process bus, process sandbox)."""
    from squall.cli.standalone import run

    settings = Settings.from_env(
        host=host,
        port=port,
        home=home,
        api_host=api_host,
        user_memory_mb=user_memory,
        keep_warm_s=keep_warm,
        log_level=log_level,
        sandbox_network=sandbox_network,
        cgroup_root=cgroup_root,
        unsafe_no_isolation=unsafe_no_isolation,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together (or SQUALL_TLS_CERT/KEY)")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    run(settings)


if __name__ == "__main__":
    main()
