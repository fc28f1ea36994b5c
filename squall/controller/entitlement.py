"""Entitlement: which entities a caller may read, invoke, bind or compose, and resolving
an action reference (possibly through a package binding) to the action that runs.

Rule: everything in the caller's own namespace; in another namespace only what sits in a
published package, read/invoke only. Anything else is 403 with the same message whether
it exists or not, so existence never leaks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from squall.controller.core import Controller
from squall.entities import params
from squall.entities.action import Action
from squall.entities.names import EntityPath
from squall.entities.package import Package
from squall.errors import BadRequest, Forbidden, NotFound


async def resolve_action(
    ctl: Controller, caller_ns: str, path: EntityPath, *, invoking: bool = True
) -> Action:
    """The action at ``path`` with its package's parameters merged below its own.
    ``invoking``: the lookup is an invoke's (``Catalog.get``'s flag); a GET's or a
    check's passes False.

    Through a binding, the action comes from the bound package and the parameters merge
    in OpenWhisk's order: package < binding < action (the invoke payload goes on top).
    A bound package of another namespace must still be published.
    """
    foreign = path.namespace != caller_ns
    if not path.package:
        if foreign:
            raise Forbidden()
        return await ctl.catalog.get(Action, path, invoking=invoking)
    package = await readable_package(ctl, caller_ns, EntityPath(path.namespace, "", path.package))
    layers = [package.parameters]
    if package.binding is not None:
        source_path = EntityPath(package.binding.namespace, "", package.binding.name)
        source = await readable_package(ctl, caller_ns, source_path)
        layers.insert(0, source.parameters)
        path = EntityPath(source.path.namespace, source.path.name, path.name)
    action = await ctl.catalog.get(Action, path, invoking=invoking)
    merged: params.KeyValues = []
    for layer in [*layers, action.parameters]:
        merged = params.merge(merged, layer)
    return replace(action, parameters=merged)


async def readable_package(ctl: Controller, caller_ns: str, path: EntityPath) -> Package:
    """The package at ``path`` if the caller may read it: its own, or published.

    For another namespace a missing package and a private one answer the same 403.
    """
    if path.namespace == caller_ns:
        return await ctl.catalog.get(Package, path)
    try:
        package = await ctl.catalog.get(Package, path)
    except NotFound:
        raise Forbidden() from None
    if not package.publish:
        raise Forbidden()
    return package


FINAL_VIOLATION = "Request defines parameters that are not allowed (e.g., reserved properties)."


def check_final(action: Action, payload: dict[str, Any]) -> None:
    """With annotation ``final: true`` a defined parameter cannot be overridden (400)."""
    if not action.final:  # its ``final`` annotation is ``true`` (derived once)
        return
    defined = {str(kv["key"]) for kv in action.parameters if kv.get("value") is not None}
    if defined.intersection(payload):
        raise BadRequest(FINAL_VIOLATION)
