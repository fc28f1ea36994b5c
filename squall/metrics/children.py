"""A labelled metric family's children, looked up once per label values.

``family.labels(*values)`` validates the values, takes the family's lock and looks the
child up on every call: ~2.5 µs, five times per warm invoke (the controller's outcome,
the invoker's count, wait, start and duration). :class:`Children` keeps each child it
got, so later calls are one dict lookup. The label values used here come from small
fixed sets (runtime kinds, statuses, outcomes, log destinations), so the dict stays
small; no family here ever removes a child, so a kept child is never stale.

Concurrency: called on the event loop's thread only (as the families' users are).
"""

from __future__ import annotations

from typing import Generic, Protocol, Self, TypeVar

T = TypeVar("T", bound="Labelled")


class Labelled(Protocol):
    def labels(self, *labelvalues: str) -> Self: ...


class Children(Generic[T]):
    """``children(*values)`` is ``family.labels(*values)``, made once per values."""

    __slots__ = ("_family", "_made")

    def __init__(self, family: T) -> None:
        self._family = family
        self._made: dict[tuple[str, ...], T] = {}

    def __call__(self, *values: str) -> T:
        child = self._made.get(values)
        if child is None:
            child = self._made[values] = self._family.labels(*values)
        return child
