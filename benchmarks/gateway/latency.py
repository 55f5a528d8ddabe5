"""Open-loop latency: requests sent on a fixed schedule (not when the previous one ended),
timing the whole answer and, for streams, the first SSE frame -- which wrk cannot see.

A tiny HTTP/1.1 client on raw asyncio streams keeps the client's own cost small and equal for
every target; it is subtracted anyway, since figures are reported as target minus ``direct``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass
class Sample:
    total_ms: float
    ttfb_ms: float
    status: int
    #: The gateway's own figure (``x-vmx-overhead-ms``), when it sends one.
    overhead_ms: float | None


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, request: bytes) -> Sample:
        started = time.perf_counter()
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        ttfb = time.perf_counter()
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            first = True
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if first and size:
                    # The first SSE frame (a server may send its headers before any content).
                    ttfb, first = time.perf_counter(), False
                if size == 0:
                    break
        elif "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        else:
            await self.reader.read()
        overhead = headers.get("x-vmx-overhead-ms")
        return Sample((time.perf_counter() - started) * 1000, (ttfb - started) * 1000, status,
                      float(overhead) if overhead else None)

    def close(self) -> None:
        self.writer.close()


def http_request(path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", "content-type: application/json",
             f"content-length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def measure(port: int, request: bytes, count: int, rate: float) -> list[Sample]:
    """``count`` requests at ``rate`` per second, each on an idle keep-alive connection (a new
    one only if all are busy, which at a low rate means the target fell behind)."""
    idle = [await Connection.open(port)]
    await idle[0].request(request)  # warm: connection set up, first-request paths taken
    samples: list[Sample] = []

    async def one() -> None:
        conn = idle.pop() if idle else await Connection.open(port)
        samples.append(await conn.request(request))
        idle.append(conn)

    tasks = []
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return samples
