"""The one way the test fakes serve HTTP: an aiohttp app on 127.0.0.1 at a free port.

A fake subclasses :class:`LoopbackServer`, adds its routes in ``routes`` and brackets a test
with ``start``/``stop``; ``port`` is known once started.
"""

from __future__ import annotations

from aiohttp import web


class LoopbackServer:
    port: int = 0
    #: Cancel a handler when its client goes away (aiohttp's default is off): how a fake that
    #: hangs or stalls notices that the gateway abandoned it.
    handler_cancellation: bool = False
    _runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=self.handler_cancellation)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
