"""A part other parts call, built after them because it needs them in turn: how the
composition root (``squall/system.py``, ``squall/providers.py``) resolves a cycle
between parts without setting hooks on them after construction."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Late(Generic[T]):
    """A part other parts call, built after them because it needs them in turn.

    Made empty before those parts, which get :meth:`get` (or a hook calling it); bound
    once, by this module, as soon as the part exists and before anything starts, so no
    request, message or task can reach an unbound one. ``get`` before ``bind`` is a
    wiring bug: RuntimeError.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._value: T | None = None

    def bind(self, value: T) -> T:
        if self._value is not None:
            raise RuntimeError(f"{self._what} is bound twice")
        self._value = value
        return value

    def get(self) -> T:
        if self._value is None:
            raise RuntimeError(f"{self._what} is used before it was built")
        return self._value
