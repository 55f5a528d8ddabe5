"""vmx embedded in an existing Starlette application.

The host app owns the process: its lifespan starts and stops the :class:`vmx_core.Gateway`,
its own routes call the gateway in-process (no HTTP hop), and it may also mount the full
OpenAI-compatible API of ``vmx_server`` under a prefix of its own.

Run it::

    python examples/embed_starlette.py --config examples/embedded.yaml --port 8000

    curl -s localhost:8000/ask -d '{"question": "What is vmx?"}'
    curl -sN localhost:8000/ask/stream -d '{"question": "What is vmx?"}'
    # the mounted OpenAI-compatible API (any OpenAI SDK works with this base URL):
    curl -s localhost:8000/llm/v1/completion/acme/dev/chat/completions \\
      -H 'authorization: Bearer vmx_embedded_example_local_development_key_0000' \\
      -d '{"model": "assistant", "messages": [{"role": "user", "content": "hi"}]}'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from vmx_core import Gateway
from vmx_core.errors import RequestError
from vmx_core.wire.errors import body_for
from vmx_server import create_app

DEFAULT_CONFIG = Path(__file__).with_name("embedded.yaml")
WORKSPACE, ENVIRONMENT, RESOURCE = "acme", "dev", "assistant"
#: The host app's own service key for the gateway (in production: from a secret store).
API_KEY = os.environ.get("VMX_API_KEY", "vmx_embedded_example_local_development_key_0000")


def build_app(config_path: str | os.PathLike[str] = DEFAULT_CONFIG) -> Starlette:
    # Loading the config is synchronous and needs no event loop; connections open lazily.
    gateway = Gateway.from_file(config_path)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Starlette does not run the lifespan of mounted apps, so the host starts the gateway
        # here; the mounted vmx_server app below then finds it started.
        async with gateway:
            yield

    def chat_body(question: str) -> dict[str, object]:
        return {
            "model": RESOURCE,
            "messages": [{"role": "user", "content": question}],
            "vmx": {"metadata": {"caller": "embed-starlette"}},
        }

    async def question_of(request: Request) -> str:
        try:
            data = await request.json()
        except ValueError:
            data = None
        question = data.get("question") if isinstance(data, dict) else None
        return question if isinstance(question, str) and question else "Hello!"

    async def ask(request: Request) -> Response:
        """The host's own endpoint: one in-process gateway call, a JSON answer."""
        question = await question_of(request)
        try:
            completion = await gateway.chat_completions(
                WORKSPACE, ENVIRONMENT, chat_body(question), api_key=API_KEY
            )
        except RequestError as err:
            # The same status and OpenAI-dialect body vmx_server would answer.
            return Response(body_for(err, "openai"), err.status, err.headers, media_type="application/json")
        answer = completion.json()["choices"][0]["message"]["content"]
        return JSONResponse(
            {"answer": answer, "model": completion.headers["x-vmx-model"],
             "request_id": completion.headers["x-vmx-request-id"]}
        )

    async def ask_stream(request: Request) -> Response:
        """The streaming form: the gateway yields parsed chunks, the host streams plain text."""
        question = await question_of(request)
        chunks = gateway.stream_chat_completions(WORKSPACE, ENVIRONMENT, chat_body(question), api_key=API_KEY)
        try:
            first = await anext(chunks, None)  # errors before the first chunk still get a status
        except RequestError as err:
            return Response(body_for(err, "openai"), err.status, err.headers, media_type="application/json")

        async def text() -> AsyncIterator[str]:
            try:
                async for chunk in _prepend(first, chunks):
                    for choice in chunk.get("choices", []):
                        yield choice["delta"].get("content") or ""
            except RequestError as err:
                # After the first byte the status is sent: report the failure in-band.
                yield f"\n[error: {err.message}]"
            finally:
                await chunks.aclose()  # releases the upstream stream if the client left early

        return StreamingResponse(text(), media_type="text/plain")

    return Starlette(
        routes=[
            Route("/ask", ask, methods=["POST"]),
            Route("/ask/stream", ask_stream, methods=["POST"]),
            # The whole vmx HTTP API, mounted inside the host app.
            Mount("/llm", app=create_app(gateway)),
        ],
        lifespan=lifespan,
    )


async def _prepend(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    if first is not None:
        yield first
    async for item in rest:
        yield item


def main() -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()

    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.errorlog = "-"  # hypercorn prints "Running on http://HOST:PORT" there
    app = build_app(args.config)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(run())


if __name__ == "__main__":
    main()
