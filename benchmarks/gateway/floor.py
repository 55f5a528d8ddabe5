"""The floor: what the Python server stack costs by itself, with no gateway logic at all.

One Starlette route forwards the body untouched through a pooled aiohttp session and relays
the answer (chunk by chunk for streams), on hypercorn with uvloop -- the stack vmx runs on.
Run: ``python benchmarks/gateway/floor.py --port 9001 --upstream http://127.0.0.1:9000/v1``.
``--extra-headers N`` adds N response headers (what vmx's contract headers cost the server);
``from_env`` is the same app for other ASGI servers (``uvicorn --factory``, FLOOR_UPSTREAM).
"""

import argparse
import asyncio
import os

import aiohttp
import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


def app(upstream: str, extra_headers: int = 0) -> Starlette:
    extra = {f"x-floor-extra-{i}": f"value-{i}" for i in range(extra_headers)}
    session: list[aiohttp.ClientSession] = []  # created inside the running loop

    async def forward(request):  # type: ignore[no-untyped-def]
        if not session:
            session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)))
        body = await request.body()
        resp = await session[0].post(upstream + "/chat/completions", data=body,
                                     headers={"content-type": "application/json"})
        if resp.content_type != "text/event-stream":
            return Response(await resp.read(), resp.status, extra, media_type=resp.content_type)

        async def relay():  # type: ignore[no-untyped-def]
            async with resp:
                async for chunk in resp.content.iter_any():
                    yield chunk

        return StreamingResponse(relay(), resp.status, extra, media_type="text/event-stream")

    async def healthz(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/v1/chat/completions", forward, methods=["POST"]),
                             Route("/healthz", healthz)])


def from_env() -> Starlette:
    return app(os.environ["FLOOR_UPSTREAM"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--extra-headers", type=int, default=0)
    args = parser.parse_args()
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    uvloop.install()
    asyncio.run(serve(app(args.upstream, args.extra_headers), config))  # type: ignore[arg-type]
