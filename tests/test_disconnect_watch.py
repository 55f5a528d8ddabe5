"""The disconnect watch: a client that leaves cancels its call; one that stays is never touched,
whether ``receive`` is hypercorn's queue (stepped without a task) or any other callable (a task)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from vmx_server.disconnect import DisconnectWatch, _Stepped

DISCONNECT = {"type": "http.disconnect"}
MORE_BODY = {"type": "http.request", "body": b"late", "more_body": False}

Receive = Callable[[], Awaitable[dict[str, Any]]]


def queue_receive() -> tuple[asyncio.Queue[dict[str, Any]], Receive]:
    """hypercorn's ``receive``: the ``get`` of the queue the server fills."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    return queue, queue.get


def wrapped_receive() -> tuple[asyncio.Queue[dict[str, Any]], Receive]:
    """A ``receive`` that is not the queue's own method (middleware, another server)."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive() -> dict[str, Any]:
        async with asyncio.timeout(60):  # needs a task of its own
            return await queue.get()

    return queue, receive


class OwnQueue(asyncio.Queue[dict[str, Any]]):
    """A subclass may override anything: its ``get`` is not stepped by hand."""


def subclass_receive() -> tuple[asyncio.Queue[dict[str, Any]], Receive]:
    queue = OwnQueue()
    return queue, queue.get


RECEIVES = pytest.mark.parametrize(
    "make", [queue_receive, wrapped_receive, subclass_receive], ids=["queue", "wrapped", "queue-subclass"]
)


async def _call(make: Callable[[], tuple[asyncio.Queue[dict[str, Any]], Receive]],
                body: Callable[[asyncio.Queue[dict[str, Any]], DisconnectWatch], Awaitable[None]]) -> tuple[str, DisconnectWatch]:
    """Run ``body`` as a call under a watch, as the completion endpoint does; what ended it."""
    queue, receive = make()
    holder: list[DisconnectWatch] = []

    async def call() -> str:
        watch = DisconnectWatch(receive)
        holder.append(watch)
        try:
            await body(queue, watch)
            return "finished"
        except asyncio.CancelledError:
            if not watch.absorb():
                raise
            return "client left"
        finally:
            watch.stop()

    result = await asyncio.create_task(call())
    return result, holder[0]


@RECEIVES
async def test_a_disconnect_cancels_the_call(make: Any) -> None:
    """``http.disconnect`` on ``receive`` cancels the waiting call, and ``absorb`` owns it."""

    async def body(queue: asyncio.Queue[dict[str, Any]], watch: DisconnectWatch) -> None:
        queue.put_nowait(DISCONNECT)
        await asyncio.Event().wait()  # an upstream that never answers

    result, watch = await _call(make, body)
    assert result == "client left"
    assert watch.disconnected


@RECEIVES
async def test_a_disconnect_already_queued_cancels_at_the_first_wait(make: Any) -> None:
    """A client gone before the watch starts still cancels the call."""
    queue, receive = make()
    queue.put_nowait(DISCONNECT)

    async def call() -> str:
        watch = DisconnectWatch(receive)
        try:
            await asyncio.Event().wait()
            return "finished"
        except asyncio.CancelledError:
            assert watch.absorb()
            return "client left"
        finally:
            watch.stop()

    assert await asyncio.create_task(call()) == "client left"


@RECEIVES
async def test_other_messages_are_read_past(make: Any) -> None:
    """Messages that are not a disconnect are consumed and the watch goes on listening."""

    async def body(queue: asyncio.Queue[dict[str, Any]], watch: DisconnectWatch) -> None:
        for _ in range(3):
            queue.put_nowait(MORE_BODY)
        for _ in range(10):  # loop turns: the watch reads a queued message per turn at most
            await asyncio.sleep(0)
        assert queue.empty() and not watch.disconnected
        queue.put_nowait(DISCONNECT)
        await asyncio.Event().wait()

    result, _ = await _call(make, body)
    assert result == "client left"


@RECEIVES
async def test_a_stopped_watch_leaves_the_queue_alone(make: Any) -> None:
    """After ``stop`` the watch takes nothing more from ``receive``: a later disconnect stays
    queued for whoever reads next, and the call is not cancelled."""
    queue, receive = make()

    async def call() -> str:
        watch = DisconnectWatch(receive)
        await asyncio.sleep(0)
        watch.stop()
        await asyncio.sleep(0)
        queue.put_nowait(DISCONNECT)
        for _ in range(5):
            await asyncio.sleep(0)
        assert not watch.disconnected
        return "finished"

    assert await asyncio.create_task(call()) == "finished"
    assert queue.get_nowait() == DISCONNECT


@RECEIVES
async def test_somebody_elses_cancellation_is_not_absorbed(make: Any) -> None:
    """A cancellation that is not the client's propagates: ``absorb`` says False."""
    queue, receive = make()
    started = asyncio.Event()

    async def call() -> None:
        watch = DisconnectWatch(receive)
        try:
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            assert not watch.absorb()
            raise
        finally:
            watch.stop()

    task = asyncio.create_task(call())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    queue.put_nowait(DISCONNECT)
    assert queue.get_nowait() == DISCONNECT  # the stopped watch took nothing


@pytest.mark.parametrize(("make", "tasks"), [(queue_receive, 0), (wrapped_receive, 1), (subclass_receive, 1)],
                         ids=["queue", "wrapped", "queue-subclass"])
async def test_only_hypercorns_own_receive_runs_without_a_task(make: Any, tasks: int) -> None:
    """``asyncio.Queue.get`` itself is stepped by hand, no task made; any other ``receive``
    (a wrapper, a subclass's ``get``) is watched by a task of its own."""
    _, receive = make()

    async def call() -> int:
        before = len(asyncio.all_tasks())
        watch = DisconnectWatch(receive)
        during = len(asyncio.all_tasks())
        watch.stop()
        return during - before

    assert await asyncio.create_task(call()) == tasks


async def test_a_stepped_receive_that_does_not_wait_on_a_future_is_given_up() -> None:
    """A stepped coroutine that yields anything but a future (a bare ``sleep(0)``) ends the
    watch, logged, instead of wedging it; nothing is cancelled."""
    heard: list[dict[str, Any]] = []

    async def odd() -> dict[str, Any]:
        await asyncio.sleep(0)
        return DISCONNECT

    with capture_logs() as logs:
        stepped = _Stepped(odd, lambda m: heard.append(m) or True)
    assert stepped.done() and heard == []
    assert [e["event"] for e in logs] == ["disconnect_watch_failed"]


async def test_a_stepped_receive_that_raises_ends_the_watch() -> None:
    """A stepped ``receive`` that raises stops the watch (logged), as a failed task would."""

    async def broken() -> dict[str, Any]:
        raise RuntimeError("receive failed")

    with capture_logs() as logs:
        stepped = _Stepped(broken, lambda m: True)
    assert stepped.done()
    assert logs[0]["event"] == "disconnect_watch_failed" and "receive failed" in logs[0]["error"]


async def test_a_stepped_receive_whose_future_is_cancelled_ends_the_watch_quietly() -> None:
    """If the future ``receive()`` waits on is cancelled by someone else, the watch ends without
    an error (as a cancelled task would) and cancels nothing."""
    waited: list[asyncio.Future[None]] = []

    async def receive() -> dict[str, Any]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waited.append(fut)
        await fut
        return DISCONNECT

    heard: list[dict[str, Any]] = []
    with capture_logs() as logs:
        stepped = _Stepped(receive, lambda m: heard.append(m) or True)
        assert not stepped.done()
        waited[0].cancel()
        for _ in range(3):
            await asyncio.sleep(0)
    assert stepped.done() and heard == [] and logs == []
    stepped.cancel()  # stopping it afterwards is harmless
