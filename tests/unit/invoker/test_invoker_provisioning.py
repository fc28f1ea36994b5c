"""How the invoker tries again to get a container for an activation that has not started
(squall.invoker.provisioning): which failures, how often, until when.

The cluster test (tests/cluster/test_cluster_slow.py) makes real starts fail; these
pin the policy with attempts that fail as told."""

from __future__ import annotations

import random

import pytest

from squall.errors import ContainerError
from squall.invoker.pool import NeverFits
from squall.invoker.provisioning import START_ATTEMPTS, acquire_retrying
from squall.sandbox.contracts import ImageNotFound

pytestmark = pytest.mark.anyio


class Starts:
    """Container starts whose first ``failures`` fail with ``error``."""

    def __init__(self, failures: int, error: ContainerError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return f"container {self.calls}"


def always() -> bool:
    return True


async def test_a_start_that_failed_is_tried_again_until_one_succeeds() -> None:
    starts = Starts(START_ATTEMPTS - 1, ContainerError("the runtime did not start"))
    got = await acquire_retrying(starts, always, what="/guest/a", pause_s=0.0)
    assert got == f"container {START_ATTEMPTS}"
    assert starts.calls == START_ATTEMPTS


async def test_after_the_last_attempt_the_error_is_raised() -> None:
    starts = Starts(START_ATTEMPTS, ContainerError("the runtime did not start"))
    with pytest.raises(ContainerError, match="did not start"):
        await acquire_retrying(starts, always, what="/guest/a", pause_s=0.0)
    assert starts.calls == START_ATTEMPTS


async def test_a_missing_image_is_not_tried_again() -> None:
    starts = Starts(1, ImageNotFound("nope:1"))
    with pytest.raises(ImageNotFound):
        await acquire_retrying(starts, always, what="/guest/a", pause_s=0.0)
    assert starts.calls == 1


async def test_an_action_larger_than_the_invoker_is_not_tried_again() -> None:
    starts = Starts(1, NeverFits("the action needs 512 MB but the invoker has 256 MB"))
    with pytest.raises(NeverFits):
        await acquire_retrying(starts, always, what="/guest/a", pause_s=0.0)
    assert starts.calls == 1


async def test_nothing_is_tried_again_once_the_invoker_stops() -> None:
    starts = Starts(1, ContainerError("the invoker is shutting down"))
    with pytest.raises(ContainerError, match="shutting down"):
        await acquire_retrying(starts, lambda: False, what="/guest/a", pause_s=0.0)
    assert starts.calls == 1


async def test_each_failed_start_is_logged_with_its_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="squall.invoker")
    starts = Starts(2, ContainerError("the runtime did not start"))
    await acquire_retrying(starts, always, what="/guest/a", pause_s=0.0, rng=random.Random(7))
    said = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[0] for m in said] == [
        f"no container for /guest/a (attempt {n} of {START_ATTEMPTS})" for n in (1, 2)
    ]
    assert all("the runtime did not start; the activation has not started" in m for m in said)
