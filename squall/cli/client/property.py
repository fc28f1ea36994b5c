"""``squall property set|get|unset``: the wskprops file, in the shape of ``wsk property``.

The file is ``$WSK_CONFIG_FILE`` or ``~/.wskprops`` (see :mod:`.config`); ``set`` and
``unset`` rewrite it (owner-only, atomically), keeping the keys they do not touch.
"""

from __future__ import annotations

from typing import Any

import click

from squall import __version__
from squall.cli.client import exits
from squall.cli.client.config import (
    APIHOST,
    APIVERSION,
    AUTH,
    DEFAULT_API_VERSION,
    NAMESPACE,
    base_url,
    props_path,
    read_props,
    write_props,
)
from squall.cli.client.errors import ClientError
from squall.cli.client.names import DEFAULT_NAMESPACE
from squall.cli.client.output import Output

#: Flag name -> (file key, what ``wsk`` calls it, default).
PROPERTIES: dict[str, tuple[str, str, str | None]] = {
    "auth": (AUTH, "whisk auth", None),
    "apihost": (APIHOST, "whisk API host", None),
    "apiversion": (APIVERSION, "whisk API version", DEFAULT_API_VERSION),
    "namespace": (NAMESPACE, "whisk namespace", DEFAULT_NAMESPACE),
}


def _chosen(flags: dict[str, Any]) -> list[str]:
    return [flag for flag in PROPERTIES if flags.get(flag)]


@click.group(name="property")
def property_() -> None:
    """Work with whisk properties (the wskprops file)."""


@property_.command(name="set")
@click.option("-u", "--auth", default=None, metavar="KEY", help="Authorization KEY.")
@click.option("--apihost", default=None, metavar="HOST", help="Whisk API HOST.")
@click.option("--apiversion", default=None, metavar="VERSION", help="Whisk API VERSION.")
@click.option("--namespace", default=None, help="Whisk NAMESPACE.")
def set_(**flags: str | None) -> None:
    """Set properties in the wskprops file."""
    chosen = _chosen(flags)
    if not chosen:
        raise ClientError("Unable to set the property value(s): no property given", exits.USAGE)
    path = props_path()
    props = read_props(path)
    out = Output()
    if flags["apihost"]:
        base_url(str(flags["apihost"]))  # refuse what no command could use
    for flag in chosen:
        key, label, _ = PROPERTIES[flag]
        props[key] = str(flags[flag])
    write_props(path, props)
    for flag in chosen:
        key, label, _ = PROPERTIES[flag]
        if flag == "auth":
            out.ok(f"{label} set. Run 'squall property get --auth' to see the new value.")
        else:
            out.ok(f"{label} set to {props[key]}")


@property_.command()
@click.option("-u", "--auth", is_flag=True, help="Unset the authorization key.")
@click.option("--apihost", is_flag=True, help="Unset the API host.")
@click.option("--apiversion", is_flag=True, help="Unset the API version.")
@click.option("--namespace", is_flag=True, help="Unset the namespace.")
def unset(**flags: bool) -> None:
    """Remove properties from the wskprops file."""
    chosen = _chosen(flags)
    if not chosen:
        raise ClientError("Unable to unset the property value: no property given", exits.USAGE)
    path = props_path()
    props = read_props(path)
    for flag in chosen:
        props.pop(PROPERTIES[flag][0], None)
    write_props(path, props)
    out = Output()
    for flag in chosen:
        _, label, default = PROPERTIES[flag]
        tail = (
            f"; the default value of {default} will be used."
            if default is not None
            else "; there is no default value that can be used."
        )
        out.ok(f"{label} unset{tail}")


@property_.command()
@click.option("-u", "--auth", is_flag=True, help="The authorization key.")
@click.option("--apihost", is_flag=True, help="The API host.")
@click.option("--apiversion", is_flag=True, help="The API version.")
@click.option("--namespace", is_flag=True, help="The namespace.")
@click.option("--cliversion", is_flag=True, help="The CLI version.")
@click.option("--all", "all_", is_flag=True, help="All properties (the default).")
@click.option("--json", "json_output", is_flag=True, help="Print JSON only.")
def get(cliversion: bool, all_: bool, json_output: bool, **flags: bool) -> None:
    """Print properties (all of them unless some are named)."""
    props = read_props(props_path())
    chosen = _chosen(flags)
    if all_ or not (chosen or cliversion):
        chosen, cliversion = list(PROPERTIES), True
    values: dict[str, str] = {}
    for flag in chosen:
        key, label, default = PROPERTIES[flag]
        values[label] = props.get(key) or default or ""
    if cliversion:
        values["whisk CLI version"] = f"squall {__version__}"
    out = Output(json_output)
    if json_output:
        out.json(values)
        return
    width = max(len(label) for label in values) + 2
    for label, value in values.items():
        out.text(f"{label.ljust(width)}{value}")
