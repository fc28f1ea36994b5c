"""Installing a built-in entity of ``/whisk.system`` at start-up, idempotently.

Every standalone and every controller of a cluster installs the built-in packages when
it starts; in a cluster several controllers do so at the same moment on one store.
:func:`install_entity` guarantees:

- a missing entity is created; an entity stored exactly as wanted is left alone (same
  revision, same version), so a restart rewrites nothing;
- an entity that differs (its code or annotations changed with a new Squall) is replaced
  at the stored revision, with the stored version's patch number bumped, as an update
  through the API would;
- concurrent installers agree through the store's revisions: whoever loses a race
  (``Conflict``) reads the winner's copy and compares again, so each change is written
  once, and a third conflict in a row is raised.
"""

from __future__ import annotations

from squall.catalog.manifest import PACKAGES
from squall.controller.catalog import Catalog, E
from squall.entities.common import bump_patch
from squall.errors import Conflict, NotFound

ATTEMPTS = 3


async def install_entity(catalog: Catalog, entity: E) -> None:
    """Create ``entity`` or bring the stored one up to date (see the module's guarantees)."""
    for attempt in range(ATTEMPTS):
        try:
            await _install_once(catalog, entity)
            return
        except Conflict:
            if attempt == ATTEMPTS - 1:
                raise


async def _install_once(catalog: Catalog, entity: E) -> None:
    try:
        stored = await catalog.get(type(entity), entity.path)
    except NotFound:
        await catalog.put(entity, create=True)
        return
    wanted = entity.to_store()
    if stored.to_store() | {"version": entity.version} == wanted:
        return
    wanted["version"] = bump_patch(stored.version)
    await catalog.put(
        type(entity).from_store(entity.path, wanted, stored.rev, stored.updated), create=False
    )


async def install_catalog(catalog: Catalog) -> None:
    """Install ``/whisk.system/utils`` and ``/whisk.system/samples``: each package first,
    then its actions (so a package is never listed without its actions for long, and an
    action never exists without its package)."""
    for package in PACKAGES:
        await install_entity(catalog, package.package())
        for action in package.action_entities():
            await install_entity(catalog, action)
