"""Entitlement: which entities a caller may read, invoke, bind or compose, and resolving
an action reference (possibly through a package binding) to the action that runs.

Rule: everything in the caller's own namespace; in another namespace only what sits in a
published package, read/invoke only. Anything else is 403 with the same message whether
it exists or not, so existence never leaks.
"""

from __future__ import annotations

from dataclasses import replace

from squall.controller.core import Controller
from squall.entities import params
from squall.entities.action import Action
from squall.entities.names import EntityPath
from squall.entities.package import Package
from squall.errors import Forbidden


async def resolve_action(ctl: Controller, caller_ns: str, path: EntityPath) -> Action:
    """The action at ``path`` with its package's parameters merged below its own.

    Through a binding, the action comes from the bound package and the parameters merge
    in OpenWhisk's order: package < binding < action (the invoke payload goes on top).
    A bound package of another namespace must still be published.
    """
    if not path.package:
        return await ctl.catalog.get(Action, path)
    package = await ctl.catalog.get(Package, EntityPath(path.namespace, "", path.package))
    layers = [package.parameters]
    if package.binding is not None:
        source_path = EntityPath(package.binding.namespace, "", package.binding.name)
        source = await ctl.catalog.get(Package, source_path)
        if source.path.namespace != caller_ns and not source.publish:
            raise Forbidden()
        layers.insert(0, source.parameters)
        path = EntityPath(source.path.namespace, source.path.name, path.name)
    action = await ctl.catalog.get(Action, path)
    merged: params.KeyValues = []
    for layer in [*layers, action.parameters]:
        merged = params.merge(merged, layer)
    return replace(action, parameters=merged)
