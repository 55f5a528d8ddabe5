"""``shielded`` is ``asyncio.shield`` without its task when the coroutine never waits: the same
results, errors and protection from cancellation, whether the coroutine waits or not."""

from __future__ import annotations

import asyncio

import pytest

from vmx_core.pipeline.shield import shielded


async def test_a_coroutine_that_never_waits_runs_in_place() -> None:
    """A coroutine that finishes without waiting runs in the caller's task and no other."""
    outer = asyncio.current_task()
    seen = []

    async def note() -> int:
        seen.append(asyncio.current_task())
        return 7

    assert await shielded(note()) == 7
    assert seen == [outer]


async def test_a_coroutine_that_waits_gets_its_results_through() -> None:
    """What the awaited futures resolve to reaches the coroutine, and its result the caller."""
    loop = asyncio.get_running_loop()

    async def add() -> int:
        first: asyncio.Future[int] = loop.create_future()
        loop.call_soon(first.set_result, 2)
        second: asyncio.Future[int] = loop.create_future()
        loop.call_soon(second.set_result, 3)
        await asyncio.sleep(0)
        return await first + await second

    assert await shielded(add()) == 5


@pytest.mark.parametrize("waits", [False, True])
async def test_errors_reach_the_caller(waits: bool) -> None:
    """An exception raised before or after the coroutine first waits propagates unchanged."""

    async def fail() -> None:
        if waits:
            await asyncio.sleep(0)
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        await shielded(fail())


async def test_an_error_thrown_into_the_coroutine_is_its_to_handle() -> None:
    """A future that fails raises inside the coroutine, which may catch it and go on."""
    loop = asyncio.get_running_loop()

    async def recover() -> str:
        fut: asyncio.Future[None] = loop.create_future()
        loop.call_soon(fut.set_exception, ValueError("upstream"))
        try:
            await fut
        except ValueError as exc:
            await asyncio.sleep(0)
            return f"recovered from {exc}"
        return "not reached"

    assert await shielded(recover()) == "recovered from upstream"


async def test_cancelling_the_caller_does_not_cut_the_coroutine_short() -> None:
    """The caller is cancelled while the coroutine waits: the caller sees CancelledError, and the
    coroutine still runs to its end (what asyncio.shield promises)."""
    gate = asyncio.Event()
    done = asyncio.Event()
    started = asyncio.Event()

    async def cleanup() -> None:
        started.set()
        await gate.wait()
        done.set()

    caller = asyncio.ensure_future(shielded(cleanup()))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert not done.is_set()
    gate.set()
    await done.wait()


async def test_a_pending_cancellation_does_not_interrupt_a_coroutine_that_never_waits() -> None:
    """A cancellation requested before the clean-up runs is delivered after it, not inside it."""
    ran = []

    async def cleanup() -> None:
        ran.append("cleanup")

    async def body() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # pending: delivered at the next wait
        await shielded(cleanup())
        ran.append("after")
        await asyncio.sleep(0)
        ran.append("not reached")

    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(body())
    assert ran == ["cleanup", "after"]


async def test_a_future_is_shielded_as_asyncio_shield_does() -> None:
    """An awaitable that is not a coroutine (a future) is shielded the usual way."""
    fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.set_result, "ok")
    assert await shielded(fut) == "ok"
