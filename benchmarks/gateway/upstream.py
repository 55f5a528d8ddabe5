"""A fast fake OpenAI upstream: answers chat completions from precomputed bytes.

It is deliberately a raw asyncio protocol on uvloop rather than an aiohttp app: the upstream
shares a core with the load generator, and every microsecond it spends is noise in every
target's figure.  A non-streamed answer is one write; a streamed one is 20 content chunks in
chunked transfer encoding (plus the role chunk, the finish chunk, an optional usage chunk and
``[DONE]``), each chunk delayed by ``--chunk-delay-ms`` when set.

Run: ``python benchmarks/gateway/upstream.py --port 9000 [--chunk-delay-ms 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re

import orjson

CHUNKS = 20
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_USAGE = {"prompt_tokens": 24, "completion_tokens": CHUNKS, "total_tokens": 24 + CHUNKS}


def _completion() -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1767225600, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * CHUNKS, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": _USAGE, "system_fingerprint": "fp_bench",
    })


def _sse_frames(with_usage: bool) -> list[bytes]:
    def chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
        return {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1767225600,
                "model": "gpt-4o-mini", "system_fingerprint": "fp_bench",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": "word "}) for _ in range(CHUNKS)]
    events.append(chunk({}, "stop"))
    if with_usage:
        events.append({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1767225600,
                       "model": "gpt-4o-mini", "choices": [], "usage": _USAGE})
    frames = [b"data: " + orjson.dumps(e) + b"\n\n" for e in events]
    frames.append(b"data: [DONE]\n\n")
    # One HTTP chunk per SSE frame, as real providers send them.
    return [b"%x\r\n%s\r\n" % (len(f), f) for f in frames] + [b"0\r\n\r\n"]


def _head(status: str, ctype: str, length: int | None) -> bytes:
    size = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    return f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\n{size}\r\nconnection: keep-alive\r\n\r\n".encode()


COMPLETION = _completion()
RESPONSE = _head("200 OK", "application/json", len(COMPLETION)) + COMPLETION
STREAM_HEAD = _head("200 OK", "text/event-stream", None)
STREAM = {usage: _sse_frames(usage) for usage in (False, True)}
HEALTH = _head("200 OK", "text/plain", 2) + b"ok"
NOT_FOUND = _head("404 Not Found", "text/plain", 9) + b"not found"


class Upstream(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order (no pipelining is needed)."""

    delay = 0.0

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence no isinstance check.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.busy is None:
            self._drain()

    def _drain(self) -> None:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            m = _LENGTH.search(head)
            size = int(m.group(1)) if m else 0
            if len(self.buf) < end + 4 + size:
                return
            body = self.buf[end + 4 : end + 4 + size]
            self.buf = self.buf[end + 4 + size :]
            if not self._answer(head, body):
                return

    def _answer(self, head: bytes, body: bytes) -> bool:
        """Answer one request; False when the answer goes on asynchronously (delayed stream)."""
        assert self.transport is not None
        line = head.split(b"\r\n", 1)[0]
        if line.startswith(b"GET /healthz"):
            self.transport.write(HEALTH)
            return True
        if not (line.startswith(b"POST ") and b"/chat/completions" in line):
            self.transport.write(NOT_FOUND)
            return True
        req = orjson.loads(body)
        if not req.get("stream"):
            self.transport.write(RESPONSE)
            return True
        opts = req.get("stream_options") or {}
        frames = STREAM[bool(opts.get("include_usage"))]
        if not self.delay:
            self.transport.write(STREAM_HEAD + b"".join(frames))
            return True
        self.busy = asyncio.get_running_loop().create_task(self._slow(frames))
        return False

    async def _slow(self, frames: list[bytes]) -> None:
        assert self.transport is not None
        self.transport.write(STREAM_HEAD)
        for frame in frames:
            await asyncio.sleep(self.delay)
            if self.transport.is_closing():
                return
            self.transport.write(frame)
        self.busy = None
        self._drain()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy is not None:
            self.busy.cancel()


async def serve(port: int, delay_ms: float) -> None:
    Upstream.delay = delay_ms / 1000
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port, args.chunk_delay_ms))


if __name__ == "__main__":
    main()
