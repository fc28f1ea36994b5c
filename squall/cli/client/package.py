"""``squall package create|update|bind|get|list|delete``, in the shape of ``wsk package``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from squall.cli.client import entities
from squall.cli.client.common import Session, client_command
from squall.cli.client.params import Pairs, annotation_options, collect, key_values, param_options

SHARED_CHOICES = ("yes", "no", "true", "false")


@click.group()
def package() -> None:
    """Work with packages."""


def _put(
    session: Session,
    name: str,
    body: dict[str, Any],
    overwrite: bool,
    what: str,
    done: str,
) -> None:
    qname = session.name(name)
    with session.client() as client:
        reply = client.call(
            "PUT",
            f"packages/{qname.url_path}",
            what,
            namespace=qname.namespace,
            params={"overwrite": "true" if overwrite else "false"},
            json=body,
        )
    if session.out.json_mode:
        session.out.json(reply.body)
    session.out.ok(done)


def _body(
    param: Pairs,
    param_file: Path | None,
    annotation: Pairs,
    annotation_file: Path | None,
    shared: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    parameters = collect(param, param_file)
    annotations = collect(annotation, annotation_file, "annotation")
    if parameters:
        body["parameters"] = key_values(parameters)
    if annotations:
        body["annotations"] = key_values(annotations)
    if shared is not None:
        body["publish"] = shared in ("yes", "true")
    return body


def _put_options(f: Any) -> Any:
    f = click.option(
        "--shared", type=click.Choice(SHARED_CHOICES), default=None, help="Visibility."
    )(f)
    f = param_options(annotation_options(f))
    return click.argument("name")(f)


@package.command()
@_put_options
@client_command
def create(
    session: Session,
    name: str,
    param: Pairs,
    param_file: Path | None,
    annotation: Pairs,
    annotation_file: Path | None,
    shared: str | None,
) -> None:
    """Create package NAME."""
    body = _body(param, param_file, annotation, annotation_file, shared)
    _put(
        session, name, body, False, f"Unable to create package '{name}'", f"created package {name}"
    )


@package.command()
@_put_options
@client_command
def update(
    session: Session,
    name: str,
    param: Pairs,
    param_file: Path | None,
    annotation: Pairs,
    annotation_file: Path | None,
    shared: str | None,
) -> None:
    """Update package NAME, or create it if it does not exist."""
    body = _body(param, param_file, annotation, annotation_file, shared)
    _put(session, name, body, True, "Package update failed", f"updated package {name}")


@package.command()
@click.argument("package_name", metavar="PACKAGE")
@click.argument("name", metavar="BINDING")
@param_options
@annotation_options
@client_command
def bind(
    session: Session,
    package_name: str,
    name: str,
    param: Pairs,
    param_file: Path | None,
    annotation: Pairs,
    annotation_file: Path | None,
) -> None:
    """Create BINDING, a binding of PACKAGE with its own parameters."""
    bound = session.name(package_name)
    body = _body(param, param_file, annotation, annotation_file)
    body["binding"] = {"namespace": bound.namespace, "name": bound.name}
    _put(session, name, body, False, "Binding creation failed", f"created binding {name}")


@package.command()
@click.argument("name")
@client_command
def get(session: Session, name: str) -> None:
    """Get package NAME."""
    entities.get_command(session, "packages", "package", name)


@package.command(name="list")
@entities.list_options
@client_command
def list_(
    session: Session, namespace_arg: str | None, skip: int, limit: int, name_sort: bool
) -> None:
    """List the packages."""

    def row(p: dict[str, Any]) -> list[str]:
        binding = p.get("binding")
        bound = f"binding /{binding['namespace']}/{binding['name']}" if binding else ""
        return [entities.fqn(p), entities.visibility(p), bound]

    entities.list_command(session, "packages", row, namespace_arg, skip, limit, name_sort)


@package.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete the package even if it has actions.")
@client_command
def delete(session: Session, name: str, force: bool) -> None:
    """Delete package NAME."""
    qname = session.name(name)
    with session.client() as client:
        reply = client.call(
            "DELETE",
            f"packages/{qname.url_path}",
            f"Unable to delete package '{name}'",
            namespace=qname.namespace,
            params={"force": "true"} if force else None,
        )
    if session.out.json_mode:
        session.out.json(reply.body)
    session.out.ok(f"deleted package {name}")
