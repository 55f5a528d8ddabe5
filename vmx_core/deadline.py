"""``asyncio.timeout`` for the request path: the same semantics, a third of the cost.

Every leg runs under its deadline and every wait of a stream under its idle timeout, so a
streamed request enters three or more of these.  ``asyncio.timeout`` (Python 3.11) costs about
3 µs per use: two coroutines for ``async with``, an enum state machine, and two looks at the
running loop, each a ``getpid`` system call on 3.11.  :class:`deadline` is a plain ``with``
around the same mechanism: a timer that cancels the task, turned back into ``TimeoutError``
on the way out only when it was that timer's cancellation (issue 9).
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class deadline:
    """``with deadline(seconds):`` raises ``TimeoutError`` if the block is still running after
    ``seconds`` (at once for 0 or less), cancelling whatever it awaits, as
    ``async with asyncio.timeout(seconds):`` does.  Must be entered inside a task."""

    __slots__ = ("_cancelling", "_expired", "_handle", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._expired = False

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("deadline() must be used inside a task")
        self._task = task
        # A cancellation already pending is somebody else's: ours is the one past this count.
        self._cancelling = task.cancelling()
        loop = task.get_loop()
        self._handle = loop.call_at(loop.time() + self._seconds, self._expire)

    def _expire(self) -> None:
        self._task.cancel()
        self._expired = True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._handle.cancel()
        # Only the timer's own cancellation becomes TimeoutError; one from outside (the client
        # left, a shutdown) stays a cancellation, even when the timer fired as well.
        if self._expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
