"""``deadline`` behaves as ``asyncio.timeout``: its own expiry is TimeoutError, anybody else's
cancellation stays a cancellation, and nothing fires after the block."""

from __future__ import annotations

import asyncio

import pytest

from vmx_core.deadline import deadline


async def test_a_block_that_overruns_raises_timeout_and_cancels_what_it_awaited() -> None:
    """Past the deadline the awaited operation is cancelled and the block ends in TimeoutError."""
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        with deadline(0.01):
            await never
    assert never.cancelled()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_block_in_time_is_left_alone_afterwards() -> None:
    """A block that ends in time returns its value, and the timer never fires later."""
    with deadline(0.05):
        value = await asyncio.sleep(0, "done")
    assert value == "done"
    await asyncio.sleep(0.1)  # past the deadline: no stray cancellation arrives


@pytest.mark.parametrize("seconds", [0.0, -1.0])
async def test_no_time_left_fails_at_the_first_wait(seconds: float) -> None:
    """A deadline of zero or less raises TimeoutError at the block's first wait."""
    reached = []
    with pytest.raises(TimeoutError):
        with deadline(seconds):
            reached.append("before")
            await asyncio.sleep(1)
            reached.append("after")
    assert reached == ["before"]


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    """The task cancelled by someone else inside the block sees CancelledError, not TimeoutError."""
    started = asyncio.Event()

    async def body() -> None:
        with deadline(10):
            started.set()
            await asyncio.sleep(10)

    task = asyncio.ensure_future(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_outside_cancellation_wins_over_an_expiry_at_the_same_time() -> None:
    """When the deadline fires and someone else cancels too, the block ends cancelled."""
    started = asyncio.Event()

    async def body() -> None:
        with deadline(0.01):
            started.set()
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            await asyncio.sleep(0.05)  # the timer fires meanwhile

    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(body())


async def test_nested_deadlines_each_raise_their_own() -> None:
    """An inner deadline's expiry is the inner block's TimeoutError; the outer block goes on."""
    with deadline(5):
        with pytest.raises(TimeoutError):
            with deadline(0.01):
                await asyncio.sleep(1)
        assert await asyncio.sleep(0, "outer continues") == "outer continues"


async def test_a_timeout_handled_inside_the_block_is_not_raised_again() -> None:
    """A block that catches its own cancellation and finishes normally raises nothing."""
    with deadline(0.01):
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            pass


def test_outside_a_task_is_an_error() -> None:
    """Entering a deadline without a running task raises RuntimeError."""
    with pytest.raises(RuntimeError):
        with deadline(1):
            pass
