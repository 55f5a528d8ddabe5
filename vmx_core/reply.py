"""What the gateway answers: a whole completion or a stream of SSE frames."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from attrs import define, frozen

from vmx_core.wire.sse import SSEParser


@frozen
class Completion:
    """A non-streaming answer.  ``body`` is the upstream's bytes, passed through verbatim
    when the client's shape and the provider's match."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@define
class StreamingCompletion:
    """A streaming answer: iterate it for raw SSE frames (bytes), or use :meth:`events`.

    Always iterate it to the end or call :meth:`aclose`: that releases the upstream
    connection and writes the audit record.
    """

    status: int
    headers: dict[str, str]
    frames: AsyncIterator[bytes]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.frames

    async def events(self) -> AsyncIterator[Any]:
        """Each frame's ``data`` parsed as JSON (``[DONE]`` is skipped)."""
        parser = SSEParser()
        async for frame in self.frames:
            for ev in parser.feed(frame):
                if not ev.is_done:
                    yield orjson.loads(ev.data)

    async def aclose(self) -> None:
        aclose = getattr(self.frames, "aclose", None)
        if aclose is not None:
            await aclose()


Reply = Completion | StreamingCompletion
