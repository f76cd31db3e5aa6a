"""An aiohttp server on a free loopback port, run in a thread of its own (with its own event loop),
so tests and benchmarks that make blocking calls can keep it answering."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from typing import Self

from aiohttp import web


class LoopbackServer:
    """Subclasses build the app in `app()`; `opened()`/`closing()` set up and free their own state."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    async def opened(self) -> None:
        """Runs on the server's loop before it listens."""

    async def closing(self) -> None:
        """Runs on the server's loop after it stopped listening."""

    async def serve(self, port: int = 0) -> None:
        await self.opened()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.closing()

    def start(self) -> Self:
        ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.close())

        self._thread = threading.Thread(target=main, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def serve_until_signalled(self, port: int, banner: Callable[[], str]) -> int:
        """Serve in this thread until SIGINT or SIGTERM (a standalone command); prints `banner()` once it
        listens. Returns the exit code."""

        async def main() -> None:
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            await self.serve(port)
            # Only now: whoever waits for the banner may signal at once, and the handlers are in place.
            print(banner(), flush=True)
            await stop.wait()
            await self.close()

        asyncio.run(main())
        return 0

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
