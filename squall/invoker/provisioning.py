"""Getting a container for an activation that has not started: a failed start is tried
again.

A container's start can fail for a passing reason: on a loaded machine a runtime may not
be listening within the factory's start timeout (10 s), and a burst of cold starts fails
together (measured: at a load average of ~40 on 2 cores, 14 Node.js runtimes of one
burst timed out at once, and each of their activations ended as ``whisk internal
error``). Those activations had not started — the started point
(``ActivationStore.start``) comes only once a container is ready, and no code of the
action ran — so, as every accepted activation that never started must, they run: the
invoker asks the pool again, a pause later, up to :data:`START_ATTEMPTS` times in all.
Only when every attempt failed does the activation end with OpenWhisk's "Failed to
provision resources to run the action." record.

Why this runs nothing twice: nothing ran. A failed ``create`` leaves no process behind
(``ContainerFactory.create``'s guarantee), and the pool forgets the failed container
before it raises; the activation is marked started only after a later attempt handed it
a ready container.

What is not tried again: an image that is not there (``ImageNotFound``, a developer
error that waiting does not cure), an action larger than the invoker (``NeverFits``),
and anything once the invoker is shutting down
(``keep_trying`` says so; the pool refuses too).

The pauses grow with each attempt and are spread at random (from half to one and a half
times :data:`PAUSE_S`, times the attempt number), so that the runs of a burst whose starts
timed out together do not all start again at the same instant — a second burst of as
many starts is what failed the first time. When they start again, runs of the same
action may find a container another one of them started meanwhile (the pool's warm
rules), which needs no start at all.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from squall.errors import ContainerError
from squall.invoker.pool import NeverFits
from squall.sandbox.contracts import ImageNotFound

log = logging.getLogger("squall.invoker")

#: Attempts at getting a container for one activation, the first included.
START_ATTEMPTS = 3
#: The mean pause before the second attempt (twice that before the third).
PAUSE_S = 1.0

T = TypeVar("T")


async def acquire_retrying(
    acquire: Callable[[], Awaitable[T]],
    keep_trying: Callable[[], bool],
    *,
    what: str,
    attempts: int = START_ATTEMPTS,
    pause_s: float = PAUSE_S,
    rng: random.Random | None = None,
) -> T:
    """``acquire()``, again after a ContainerError (not ``ImageNotFound`` or
    ``NeverFits``: no later try can succeed), up to
    ``attempts`` times in all and only while ``keep_trying()``; the last error is raised.
    ``what`` names the action in the log lines."""
    jitter = rng or random
    attempt = 1
    while True:
        try:
            return await acquire()
        except (ImageNotFound, NeverFits):
            raise
        except ContainerError as error:
            if attempt >= attempts or not keep_trying():
                raise
            pause = pause_s * attempt * (0.5 + jitter.random())
            log.warning("no container for %s (attempt %d of %d): %s; the activation has not "
                        "started, trying again in %.1f s", what, attempt, attempts,
                        error.message, pause)  # fmt: skip
            await asyncio.sleep(pause)
            attempt += 1
