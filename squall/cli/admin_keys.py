"""``squall admin parameter-key``: the key default parameters and log-forwarding
credentials are encrypted with at rest (:mod:`squall.store.encryption`).

::

    squall admin parameter-key new      print a new random key (for SQUALL_PARAMETER_KEY)
    squall admin parameter-key rotate   re-encrypt every stored secret with the current key

Standalone (the key in ``$SQUALL_HOME/parameter.key``): ``rotate`` makes a new key, writes
it first in the file with the old one after it (a running server re-reads the file, so it
keeps reading both and writes with the new one), re-encrypts everything, and keeps the
old key in the file as the previous one until the next rotation.

A cluster (``SQUALL_PARAMETER_KEY`` given): first give every controller and invoker the
new key in ``SQUALL_PARAMETER_KEY`` and the old one in ``SQUALL_PARAMETER_KEY_PREVIOUS``
and restart them; then ``rotate`` with the same two variables re-encrypts what is stored;
then drop ``SQUALL_PARAMETER_KEY_PREVIOUS`` (another restart).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import click

from squall.cli.admin_store import describe
from squall.config import Settings
from squall.errors import SquallError
from squall.store.encryption import (
    KEY_FILE,
    KeyRing,
    encode_key,
    ensure_key_file,
    new_key,
    read_key_file,
    uses_key_file,
    write_key_file,
)
from squall.store.factory import open_store
from squall.store.rotation import RotationReport, reencrypt

NO_KEY = (
    "this store's servers get their key from SQUALL_PARAMETER_KEY: set it to the new key "
    "and SQUALL_PARAMETER_KEY_PREVIOUS to the old one, as the servers have them"
)


class HasSettings(Protocol):
    """What the admin group passes its commands (``squall.cli.admin_store.Target``)."""

    settings: Settings


@click.group("parameter-key")
def parameter_key() -> None:
    """The key parameters and credentials are encrypted with at rest."""


@parameter_key.command("new")
def key_new() -> None:
    """Print a new random key (base64 of 32 bytes) for SQUALL_PARAMETER_KEY."""
    click.echo(new_key())


@parameter_key.command("rotate")
@click.pass_obj
def key_rotate(target: HasSettings) -> None:
    """Re-encrypt every stored parameter and credential with the current key (standalone:
    with a new key, made now)."""
    settings = target.settings
    try:
        report, note = asyncio.run(_rotate(settings))
    except SquallError as error:
        raise click.ClickException(error.message) from None
    for collection, count in sorted(report.rewritten.items()):
        click.echo(f"{collection}: {count} re-encrypted")
    click.echo(f"{report.total} documents of {describe(settings)} re-encrypted; {note}")
    if report.skipped:
        raise click.ClickException(
            "written by servers on every attempt, run rotate again: " + ", ".join(report.skipped)
        )


async def _rotate(settings: Settings) -> tuple[RotationReport, str]:
    if uses_key_file(settings):
        path = settings.home / KEY_FILE
        ensure_key_file(path)
        old = read_key_file(path)
        fresh = new_key()
        # The new key first, the old one still readable: from here on, servers reading the
        # file write with the new key, and everything the old one sealed still opens.
        write_key_file(path, [fresh, encode_key(old.current)])
        ring: KeyRing | None = KeyRing(read_key_file(path), path=path)
        note = f"the previous key stays in {path} until the next rotation"
    else:
        if not settings.parameter_key:
            raise click.ClickException(NO_KEY)
        ring = None  # the settings' keys: the new one and the previous ones
        note = "drop SQUALL_PARAMETER_KEY_PREVIOUS once every server runs with the new key"
    store = await open_store(settings, ring=ring)
    try:
        return await reencrypt(store), note
    finally:
        await store.close()
