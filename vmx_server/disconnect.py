"""Watching for a client that goes away while its call runs: the call's task is cancelled, which
closes the upstream connection, and the provider stops generating.

The watcher listens on ASGI ``receive`` until ``http.disconnect``.  Under any server that is a
task of its own.  Under hypercorn, whose ``receive`` is ``asyncio.Queue.get`` of a queue it
fills, the watcher steps that coroutine by hand instead, from the done-callback of the future it
waits on: the same awaits in the same order, without a task's creation, its scheduling, its
cancellation and its exception when the answer is sent -- about 3% of a request's CPU in the
server (issue 9, docs/performance.md).  Only that method is stepped by hand: another ``receive``
may need to run inside a task (``asyncio.timeout``, anyio's cancel scopes look it up).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from starlette.types import Receive

log = structlog.get_logger("vmx.server")


class DisconnectWatch:
    """Cancels the task that created it when the client disconnects.

    ``stop()`` it when the answer is sent; after catching the cancellation, ``absorb()`` tells
    whether it was the client's (and clears it) or somebody else's (re-raise then)."""

    __slots__ = ("_task", "_watcher", "disconnected")

    def __init__(self, receive: Receive) -> None:
        self.disconnected = False
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._watcher: _Stepped | asyncio.Task[None]
        if type(getattr(receive, "__self__", None)) is asyncio.Queue and getattr(receive, "__func__", None) is asyncio.Queue.get:
            self._watcher = _Stepped(receive, self._heard)
        else:
            self._watcher = task.get_loop().create_task(self._watch(receive))

    def _heard(self, message: dict[str, Any]) -> bool:
        """One message from the client; True when it was the last (the client left)."""
        if message["type"] != "http.disconnect":
            return False
        self.disconnected = True
        self._task.cancel()
        return True

    async def _watch(self, receive: Receive) -> None:
        while not self._heard(await receive()):
            pass

    def stop(self) -> None:
        if not self._watcher.done():
            self._watcher.cancel()

    def absorb(self) -> bool:
        """After a ``CancelledError``: True if it came from the client leaving."""
        if self.disconnected:
            self._task.uncancel()
            return True
        return False


class _Stepped:
    """``receive()`` called over and over, each coroutine stepped by hand until a message
    handed to ``heard`` is the last: what a task running ``while not heard(await receive())``
    does, for a coroutine that only ever waits on futures of the running loop (as
    ``asyncio.Queue.get`` does).  The first step runs at once, in the caller."""

    __slots__ = ("_coro", "_done", "_heard", "_receive", "_waiting")

    def __init__(self, receive: Callable[[], Coroutine[Any, Any, Any]], heard: Callable[[dict[str, Any]], bool]) -> None:
        self._receive: Callable[[], Coroutine[Any, Any, Any]] | None = receive
        self._heard: Callable[[dict[str, Any]], bool] | None = heard
        self._coro: Coroutine[Any, Any, Any] | None = None
        self._waiting: asyncio.Future[Any] | None = None
        self._done = False
        self._step()

    def done(self) -> bool:
        return self._done

    def _step(self, _: object = None) -> None:
        self._waiting = None
        while not self._done:
            assert self._receive is not None and self._heard is not None
            coro = self._coro
            if coro is None:
                coro = self._coro = self._receive()
            try:
                waits_on = coro.send(None)
            except StopIteration as got:
                self._coro = None
                if self._heard(got.value):
                    self._finish()
                continue
            except asyncio.CancelledError:  # its future was cancelled: quietly, as a task would be
                self._coro = None
                self._finish()
                return
            except Exception as exc:  # a watcher that fails stops watching, as a task would
                self._coro = None
                self._finish()
                log.warning("disconnect_watch_failed", error=f"{type(exc).__name__}: {exc}")
                return
            if not isinstance(waits_on, asyncio.Future):
                # Not the coroutine this was made for (a bare yield, another library's awaitable).
                self.cancel()
                log.warning("disconnect_watch_failed", error=f"receive() waited on {type(waits_on).__name__}")
                return
            # What a task does with the future its coroutine yields.
            waits_on._asyncio_future_blocking = False
            self._waiting = waits_on
            waits_on.add_done_callback(self._step)
            return

    def cancel(self) -> None:
        """Stop watching: the pending ``receive()`` is closed, leaving the queue as it was."""
        if self._done:
            return
        self._finish()
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.remove_done_callback(self._step)
        coro, self._coro = self._coro, None
        if coro is not None:
            coro.close()  # Queue.get's own clean-up: its waiter leaves the queue's getters

    def _finish(self) -> None:
        # ``heard`` is the watch's bound method, and the watch holds this object: dropping it
        # here leaves no reference cycle behind each request for the garbage collector.
        self._done = True
        self._receive = self._heard = None
