"""An invoke request and what it produced, as every invoker of actions sees them.

The API, web actions, trigger rules and the composer's steps all ask for an activation
the same way: one :class:`InvocationRequest` handed to ``Activator.invoke`` (or
``invoke_primitive``), which passes the same object on to the composer or the built-in
actions, so the request's fields are declared once, here. The answer is an
:class:`Invocation`: the id, and the typed record when it ended within the wait.
"""

from __future__ import annotations

from typing import Any

import msgspec

from squall.controller.auth import Identity
from squall.entities.action import Action
from squall.entities.activation import Activation


class InvocationRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Invoke ``action`` as ``identity`` with ``payload`` (the caller's arguments; the
    action's default parameters are merged under them when it is sent).

    ``blocking``: wait up to ``wait_ms`` for the record. ``txid`` is the transaction id.
    ``cause`` is the id of the activation that caused this one (a trigger fire, the
    enclosing sequence); ``caused_by`` becomes the record's ``causedBy`` annotation
    (``"sequence"`` for a step of a sequence or composition). Never encoded: it lives
    inside one controller; the bus carries an ``ActivationMessage``.
    """

    identity: Identity
    action: Action
    payload: dict[str, Any]
    blocking: bool
    wait_ms: int
    txid: str
    cause: str | None = None
    caused_by: str | None = None


class Invocation(msgspec.Struct, frozen=True):
    """What an invoke produced: the id, and the record if it finished in time."""

    activation_id: str
    record: Activation | None
