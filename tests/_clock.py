"""A clock for tests that must decide what time it is."""

from __future__ import annotations

T0 = 1_700_000_000_000  # epoch ms, 2023-11-14: any fixed instant will do


class FakeClock:
    """Epoch-ms clock that moves only when told, so ordering by time and what is due are
    exact. Callable, as the stores and providers take their clock."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int = 1) -> int:
        self.now += ms
        return self.now
