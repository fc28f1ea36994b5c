"""LogCollector: splitting runtime output into activations at the sentinel line."""

from __future__ import annotations

import asyncio

import pytest

from squall.sandbox.contracts import SENTINEL
from squall.sandbox.logs import MAX_LINE_BYTES, LogCollector

pytestmark = pytest.mark.anyio

END = (SENTINEL + "\n").encode()


async def test_each_activation_gets_only_its_own_lines() -> None:
    # Given output of two activations, with the second one's lines already read
    logs = LogCollector(10_000)
    logs.feed("stdout", b"one\n" + END + b"two\n")
    logs.feed("stderr", b"err one\n" + END + b"err two\n" + END)
    logs.expect_activation()
    # When the first activation's logs are collected
    first = await logs.collect(10_000, wait=1)
    # Then they hold exactly its lines, from both streams
    assert [(line.stream, line.text) for line in first.lines] == [
        ("stdout", "one"),
        ("stderr", "err one"),
    ]
    # When the second activation ends on stdout too and is collected
    logs.feed("stdout", END)
    logs.expect_activation()
    second = await logs.collect(10_000, wait=1)
    # Then it holds only its own lines
    assert sorted(line.text for line in second.lines) == ["err two", "two"]
    assert not first.truncated and not second.truncated


async def test_lines_are_stamped_in_reading_order() -> None:
    # Given lines arriving one after another on both streams
    logs = LogCollector(10_000)
    for n in range(5):
        logs.feed("stdout" if n % 2 else "stderr", f"line {n}\n".encode())
    logs.feed("stdout", END)
    logs.feed("stderr", END)
    logs.expect_activation()
    # When they are collected
    result = await logs.collect(10_000, wait=1)
    # Then they come in the order they were read, with non-decreasing timestamps
    assert [line.text for line in result.lines] == [f"line {n}" for n in range(5)]
    stamps = [line.time_ns for line in result.lines]
    assert stamps == sorted(stamps)


async def test_output_without_newline_before_the_sentinel_is_kept() -> None:
    # Given output ending without a newline, so the sentinel shares its line
    logs = LogCollector(10_000)
    logs.feed("stdout", b"partial" + END)
    logs.feed("stderr", END)
    logs.expect_activation()
    # When collected, Then the partial text is a line of its own
    assert [line.text for line in (await logs.collect(10_000, wait=1)).lines] == ["partial"]


async def test_waits_for_sentinels_that_arrive_later() -> None:
    # Given an answered activation whose sentinels have not been read yet
    logs = LogCollector(10_000)
    logs.expect_activation()
    logs.feed("stdout", b"early\n")

    async def arrive() -> None:
        await asyncio.sleep(0)
        logs.feed("stdout", b"late\n" + END)
        logs.feed("stderr", END)

    # When collecting while the rest arrives
    arriving = asyncio.create_task(arrive())
    result = await logs.collect(10_000, wait=5)
    await arriving
    # Then the collector waited for both sentinels
    assert [line.text for line in result.lines] == ["early", "late"]


async def test_gives_up_after_wait_and_returns_what_arrived() -> None:
    # Given an activation whose stderr sentinel never comes
    logs = LogCollector(10_000)
    logs.feed("stdout", b"out\n" + END)
    logs.expect_activation()
    # When collecting with a short wait, Then it returns what is there
    result = await logs.collect(10_000, wait=0.05)
    assert [line.text for line in result.lines] == ["out"]


async def test_process_exit_ends_the_wait_once_pipes_close() -> None:
    # Given a runtime that crashed mid-activation: output, then exit and closed pipes
    logs = LogCollector(10_000)
    logs.feed("stderr", b"Segmentation fault")
    logs.expect_activation()
    logs.process_exited()
    logs.eof("stdout")
    logs.eof("stderr")
    # When collecting with a long wait, Then it returns at once with the last words
    result = await asyncio.wait_for(logs.collect(10_000, wait=30), timeout=5)
    assert [line.text for line in result.lines] == ["Segmentation fault"]


async def test_limit_keeps_a_gap_free_beginning_and_flags_truncation() -> None:
    # Given an activation writing 10 lines of 10 bytes
    logs = LogCollector(10_000)
    for n in range(10):
        logs.feed("stdout", f"line {n:05d}\n".encode())
    logs.feed("stdout", END)
    logs.feed("stderr", END)
    logs.expect_activation()
    # When collected with a limit of 35 bytes
    result = await logs.collect(35, wait=1)
    # Then the first three lines are kept and the rest is reported truncated
    assert [line.text for line in result.lines] == ["line 00000", "line 00001", "line 00002"]
    assert result.truncated


async def test_the_cap_drops_lines_as_they_arrive() -> None:
    # Given a collector whose cap is 20 bytes and an activation writing 50
    logs = LogCollector(20)
    for _ in range(5):
        logs.feed("stdout", b"0123456789\n")
    logs.feed("stdout", END)
    logs.feed("stderr", END)
    logs.expect_activation()
    # When collected with a larger limit
    result = await logs.collect(10_000, wait=1)
    # Then only what fitted under the cap was ever kept, and truncation is reported
    assert len(result.lines) == 2
    assert result.truncated


async def test_an_endless_line_is_cut_into_pieces() -> None:
    # Given output that never ends its line
    logs = LogCollector(10 * MAX_LINE_BYTES)
    logs.feed("stdout", b"x" * (MAX_LINE_BYTES * 2 + 10))
    logs.eof("stdout")
    logs.eof("stderr")
    logs.expect_activation()
    # When collected, Then it came in bounded pieces
    sizes = [len(line.text) for line in (await logs.collect(10 * MAX_LINE_BYTES, wait=1)).lines]
    assert sizes == [MAX_LINE_BYTES, MAX_LINE_BYTES, 10]


async def test_unsplit_logs_return_what_arrived_without_waiting() -> None:
    # Given a concurrent runtime (no sentinels) that wrote two lines
    logs = LogCollector(10_000, split=False)
    logs.feed("stdout", b"a\nb\n")
    logs.expect_activation()
    # When collected with a long wait, Then it returns at once
    result = await asyncio.wait_for(logs.collect(10_000, wait=30), timeout=5)
    assert [line.text for line in result.lines] == ["a", "b"]


async def test_several_waiters_each_see_the_change_and_leave_nothing_behind() -> None:
    # Given two collectors' waits on one stream's sentinel (collect and wait_closed)
    logs = LogCollector(10_000)
    logs.feed("stderr", END)
    logs.expect_activation()
    collecting = asyncio.create_task(logs.collect(10_000, wait=30))
    closing = asyncio.create_task(logs.wait_closed(30))
    await asyncio.sleep(0)
    # When the sentinel comes in a chunk of its own, split across two reads
    logs.feed("stdout", END[:5])
    logs.feed("stdout", END[5:])
    # Then the collect ends with no line, the closing wait goes on until both streams close
    assert (await asyncio.wait_for(collecting, 5)).lines == []
    assert not closing.done()
    logs.eof("stdout")
    logs.eof("stderr")
    await asyncio.wait_for(closing, 5)
    # And no waiter is left behind, nor after a wait that timed out or was cancelled
    logs.expect_activation()
    assert (await logs.collect(10_000, wait=0.01)).lines == []
    logs2 = LogCollector(10_000)
    logs2.expect_activation()
    cancelled = asyncio.create_task(logs2.collect(10_000, wait=30))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert not logs._waiters and not logs2._waiters
