"""``asyncio.shield`` for clean-up that usually never waits.

A stream's clean-up (releasing the upstream connection, settling its capacity reservation)
must run to its end even when the client's leaving cancels the task meanwhile; ``shield``
guarantees that by running the coroutine in a task of its own, which costs a task and a turn
of the event loop (~4 µs) even when, as with the in-memory store and a read-out connection,
the coroutine finishes without ever waiting.  :func:`shielded` runs it in place until it first
waits and only then hands the rest to a shielded task: a cancellation is only ever delivered
where a coroutine waits, so up to that point running in place is as safe as the task.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


async def shielded(coro: Awaitable[T]) -> T:
    """``await asyncio.shield(coro)``, without the task when ``coro`` never waits."""
    if not isinstance(coro, Coroutine):  # a future, say: nothing to run in place
        return await asyncio.shield(coro)
    try:
        waiting_on = coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    return await asyncio.shield(asyncio.ensure_future(_resume(coro, waiting_on)))


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], waiting_on: Any) -> Generator[Any, Any, T]:
    """Drive ``coro`` on from where it first waited (on ``waiting_on``): what the task it runs
    in sees is what ``coro`` itself yields, and what that task sends or throws goes on to it."""
    while True:
        try:
            sent = yield waiting_on
        except GeneratorExit:  # the task was destroyed unfinished (its loop closed)
            coro.close()
            raise
        except BaseException as exc:  # thrown in by the task (a cancellation): coro's to handle
            try:
                waiting_on = coro.throw(exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                waiting_on = coro.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
