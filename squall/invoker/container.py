"""One container's life in the pool: a state machine (OpenWhisk's ContainerProxy, smaller).

States and the only transitions allowed (anything else raises :class:`InvalidTransition`)::

    STARTING ──▶ PREWARMED ──▶ INITIALIZING ──▶ BUSY ⇄ READY ──▶ PAUSED
        │            │              │            │      │          │
        └────────────┴──────────────┴────────────┴──────┴──────────┴──▶ REMOVED

- ``STARTING`` → ``PREWARMED``: a stem cell's runtime listens; it belongs to no action.
- ``STARTING`` → ``INITIALIZING``: a cold start for an action; the runtime listens and the
  one run that asked for it goes on to /init.
- ``PREWARMED`` → ``INITIALIZING``: a stem cell is taken by an action of its kind and
  memory (and concurrency 1, since the runtime's concurrency is fixed when it starts); it
  now belongs to that namespace + action + revision for the rest of its life.
- ``INITIALIZING`` → ``BUSY``: /init succeeded; the run that did the /init goes on.
- ``BUSY`` → ``BUSY``: another run of the same key takes a free slot (``concurrency > 1``),
  or one of several runs ends.
- ``BUSY`` → ``READY``: the last run ended well (success or application error).
- ``READY`` → ``BUSY``: reused by a run of the same key.
- ``READY`` → ``PAUSED``: idle past the pause grace; its processes are frozen.
- ``PAUSED`` → ``BUSY``: thawed for a run of the same key (the thaw happens first).
- any state but ``REMOVED`` → ``REMOVED``: a failed start or /init, a developer or
  internal error, eviction, the keep-warm period running out, or shutdown. ``REMOVED`` is
  final: a removed container is never handed out again, and ending a run that was still
  in flight on it changes nothing.

Guarantees: ``active`` counts the runs in flight and is > 0 exactly in ``INITIALIZING`` and
``BUSY``; ``key`` is set from ``INITIALIZING`` on and never changes; ``uses`` grows on every
hand-out, so a pause scheduled while the container was idle can tell it went stale;
``end_run`` returns how long the oldest run in flight took (from its hand-out, or from the
end of /init for the run that did the /init), which the pool learns run times from.

Concurrency: only the pool changes a container's state, on the event loop, without an
await inside a transition, so a transition is atomic with respect to other tasks.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field

from squall.errors import ContainerError
from squall.sandbox.contracts import Container

# (namespace, action fully qualified name, revision)
PoolKey = tuple[str, str, str]


class State(enum.Enum):
    # Members are singletons compared by identity: hashed by identity too, in C (Enum's
    # own ``__hash__`` is a Python call, and every transition hashes two states).
    __hash__ = object.__hash__

    STARTING = "starting"
    PREWARMED = "prewarmed"
    INITIALIZING = "initializing"
    READY = "ready"
    BUSY = "busy"
    PAUSED = "paused"
    REMOVED = "removed"


_LIVE = frozenset(State) - {State.REMOVED}

#: For each state, the states it may go to (see the module docstring for the rules).
ALLOWED: dict[State, frozenset[State]] = {
    State.STARTING: frozenset({State.PREWARMED, State.INITIALIZING, State.REMOVED}),
    State.PREWARMED: frozenset({State.INITIALIZING, State.REMOVED}),
    State.INITIALIZING: frozenset({State.BUSY, State.REMOVED}),
    State.BUSY: frozenset({State.BUSY, State.READY, State.REMOVED}),
    State.READY: frozenset({State.BUSY, State.PAUSED, State.REMOVED}),
    State.PAUSED: frozenset({State.BUSY, State.REMOVED}),
    State.REMOVED: frozenset(),
}
assert all(State.REMOVED in ALLOWED[s] for s in _LIVE)


class InvalidTransition(ContainerError):
    """A state change the state machine does not allow (a bug in the caller)."""


@dataclass(eq=False)
class PooledContainer:
    """A container with its pool state; created in ``STARTING`` before the runtime exists."""

    kind: str
    memory_mb: int
    state: State = State.STARTING
    key: PoolKey | None = None
    max_concurrent: int = 1
    active: int = 0
    uses: int = 0
    #: Whether this container began as a stem cell (its cold start was an /init only).
    stem_cell: bool = False
    #: Whether its sandbox has a network (fixed when it starts).
    network: bool = True
    last_used: float = field(default_factory=time.monotonic)
    #: When a run asked for it (its cold start began: created, or a stem cell taken).
    asked_at: float = field(default_factory=time.monotonic)
    seq: int = 0
    #: ``uses`` when the MEMORY GUARD last read its memory (:mod:`squall.invoker.memguard`).
    memory_read_at_use: int = 0
    #: Its memory use at the MEMORY GUARD's first read (after its first run), bytes.
    memory_first_read: int | None = None
    #: Whether reading its memory failed (the failure is logged once).
    memory_read_failed: bool = False
    _container: Container | None = None
    #: When each run in flight was handed out (monotonic s), oldest first.
    _run_starts: deque[float] = field(default_factory=deque)

    # -- reading ------------------------------------------------------------------------

    @property
    def container(self) -> Container:
        """The runtime; ContainerError while it is still starting."""
        if self._container is None:
            raise ContainerError("the container has not started yet")
        return self._container

    @property
    def started(self) -> bool:
        return self._container is not None

    @property
    def idle(self) -> bool:
        """Ready or paused: may be evicted, reaped or reused."""
        return self.state in (State.READY, State.PAUSED)

    @property
    def initialized(self) -> bool:
        """Whether /init succeeded (it may take runs of its key)."""
        return self.state in (State.BUSY, State.READY, State.PAUSED)

    def has_slot(self) -> bool:
        """Whether a run of its key may be handed this container now."""
        return self.idle or (self.state is State.BUSY and self.active < self.max_concurrent)

    # -- transitions --------------------------------------------------------------------

    def _to(self, state: State) -> None:
        if state not in ALLOWED[self.state]:
            raise InvalidTransition(
                f"container {self.describe()}: {self.state.value} → {state.value} is not allowed"
            )
        self.state = state

    def describe(self) -> str:
        return self._container.id if self._container is not None else f"#{self.seq}"

    def started_as_stem_cell(self, container: Container) -> None:
        """STARTING → PREWARMED."""
        self._to(State.PREWARMED)
        self._container = container
        self.stem_cell = True

    def assign(self, key: PoolKey, max_concurrent: int, container: Container | None = None) -> None:
        """STARTING (with the new ``container``) or PREWARMED → INITIALIZING for ``key``,
        with the run that asked for it in flight."""
        if self.state is State.STARTING and container is None:
            raise InvalidTransition("a cold start is assigned with the container it started")
        if self.state is State.PREWARMED:
            self.asked_at = time.monotonic()
        self._to(State.INITIALIZING)
        if container is not None:
            self._container = container
        self.key = key
        self.max_concurrent = max_concurrent
        self.active = 1
        self.uses += 1
        self.last_used = time.monotonic()
        self._run_starts.append(self.last_used)

    def initialized_ok(self) -> None:
        """INITIALIZING → BUSY: /init succeeded; its run goes on (timed from now: the
        pool learns run times, not cold starts)."""
        self._to(State.BUSY)
        self._run_starts[-1] = time.monotonic()

    def take_run(self) -> None:
        """READY, PAUSED or BUSY with a free slot → BUSY (the pool thaws a paused one
        before this)."""
        if self.state is State.BUSY and self.active >= self.max_concurrent:
            raise InvalidTransition(f"container {self.describe()} has no free slot")
        self._to(State.BUSY)
        self.active += 1
        self.uses += 1
        self.last_used = time.monotonic()
        self._run_starts.append(self.last_used)

    def run_resumed(self) -> None:
        """The run handed over last only now goes on (its task waited for the event loop
        after the hand-over): its time counts from here, so the run times the pool learns
        are the container's, not the loop's backlog."""
        if self._run_starts:
            self._run_starts[-1] = time.monotonic()

    def end_run(self) -> float:
        """One run ended well: BUSY → BUSY while others are in flight, else → READY.
        On a removed container it only counts the run out. Returns how long the oldest
        run in flight took, in seconds (runs of one container mostly end in order)."""
        self.active = max(0, self.active - 1)
        self.last_used = time.monotonic()
        started = self._run_starts.popleft() if self._run_starts else self.last_used
        if self.state is not State.REMOVED:
            self._to(State.BUSY if self.active else State.READY)
        return self.last_used - started

    def paused(self) -> None:
        """READY → PAUSED (the pool froze its processes first)."""
        self._to(State.PAUSED)

    def removed(self) -> bool:
        """Any live state → REMOVED; False (and nothing changes) if it already was."""
        if self.state is State.REMOVED:
            return False
        self._to(State.REMOVED)
        return True
