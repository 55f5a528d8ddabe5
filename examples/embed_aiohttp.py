"""vmx embedded in an existing aiohttp application.

The host app starts the :class:`vmx_core.Gateway` in ``on_startup`` and stops it in
``on_cleanup``.  Its routes call the gateway in-process: ``/ask`` with the convenience API,
``/chat/completions`` with the low-level ``Gateway.handle`` to relay an OpenAI-compatible
answer (JSON or raw SSE frames, byte for byte) with vmx's own status codes and headers.

Run it::

    python examples/embed_aiohttp.py --config examples/embedded.yaml --port 8000

    curl -s localhost:8000/ask -d '{"question": "What is vmx?"}'
    curl -sN localhost:8000/chat/completions \\
      -d '{"model": "assistant", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from aiohttp import web

from vmx_core import ClientRequest, Completion, Format, Gateway
from vmx_core.errors import RequestError
from vmx_core.wire.errors import body_for

DEFAULT_CONFIG = Path(__file__).with_name("embedded.yaml")
WORKSPACE, ENVIRONMENT, RESOURCE = "acme", "dev", "assistant"
#: The host app's own service key for the gateway (in production: from a secret store).
API_KEY = os.environ.get("VMX_API_KEY", "vmx_embedded_example_local_development_key_0000")

GATEWAY = web.AppKey("gateway", Gateway)


def error_response(err: RequestError) -> web.Response:
    """The status, ``x-vmx-*`` headers and OpenAI-dialect body vmx_server would answer."""
    return web.Response(body=body_for(err, "openai"), status=err.status, headers=err.headers,
                        content_type="application/json")


async def ask(request: web.Request) -> web.Response:
    """The host's own endpoint: one in-process gateway call, a JSON answer."""
    gateway = request.app[GATEWAY]
    try:
        data = await request.json()
    except ValueError:
        data = None
    question = data.get("question") if isinstance(data, dict) else None
    body = {"model": RESOURCE, "messages": [{"role": "user", "content": question or "Hello!"}]}
    try:
        completion = await gateway.chat_completions(WORKSPACE, ENVIRONMENT, body, api_key=API_KEY)
    except RequestError as err:
        return error_response(err)
    answer = completion.json()["choices"][0]["message"]["content"]
    return web.json_response({"answer": answer, "model": completion.headers["x-vmx-model"]})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """An OpenAI-compatible endpoint of the host app, answered by the gateway in-process.

    The client's body is handed over as bytes (vmx parses it once, enforces
    ``limits.max_body_bytes`` and removes the ``vmx`` envelope); a stream is relayed frame
    by frame without re-encoding.
    """
    gateway = request.app[GATEWAY]
    call = ClientRequest(
        Format.CHAT_COMPLETIONS, WORKSPACE, ENVIRONMENT, await request.read(), API_KEY,
        headers={k.lower(): v for k, v in request.headers.items()}, source_ip=request.remote,
    )
    try:
        reply = await gateway.handle(call)
    except RequestError as err:
        return error_response(err)
    if isinstance(reply, Completion):
        return web.Response(body=reply.body, status=reply.status, headers=reply.headers,
                            content_type="application/json")
    response = web.StreamResponse(status=reply.status, headers=reply.headers)
    response.content_type = "text/event-stream"
    try:
        await response.prepare(request)
        async for frame in reply:  # raw SSE frames; an upstream failure arrives in-band
            await response.write(frame)
        await response.write_eof()
    finally:
        await reply.aclose()  # always: releases the upstream and writes the audit record
    return response


def build_app(config_path: str | os.PathLike[str] = DEFAULT_CONFIG) -> web.Application:
    app = web.Application()

    async def start_gateway(app: web.Application) -> None:
        app[GATEWAY] = Gateway.from_file(config_path)
        await app[GATEWAY].start()

    async def stop_gateway(app: web.Application) -> None:
        await app[GATEWAY].aclose()

    app.on_startup.append(start_gateway)
    app.on_cleanup.append(stop_gateway)
    app.router.add_post("/ask", ask)
    app.router.add_post("/chat/completions", chat_completions)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    # run_app prints "======== Running on http://HOST:PORT ========" once it listens, and
    # runs on_cleanup on SIGINT/SIGTERM.
    web.run_app(build_app(args.config), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
