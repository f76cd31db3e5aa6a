"""The daemon's two listeners, started after its chains are up and stopped before its store closes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from oracle.api.control import Control
from oracle.api.gateway import Gateway
from oracle.api.metrics import Metrics
from oracle.api.operator import operator_app
from oracle.api.public import public_app
from oracle.config import Config, ConfigError, ListenerSettings
from oracle.store import Store

log = logging.getLogger(__name__)


def _bad_http_is_one_line(record: logging.LogRecord) -> bool:
    """aiohttp logs a malformed request (a 20 kB URL, a broken header) with a traceback at ERROR: anyone
    can send one, so it becomes one DEBUG line naming it."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg, record.args = "API: a malformed HTTP request was refused: %s", (type(exc).__name__,)
        record.exc_info, record.exc_text = None, None
    return True


class ApiServer:
    def __init__(self, control: Control, config: Config, store_path: Path, gateway: Gateway | None = None) -> None:
        self.config = config
        self.gateway = gateway  # served on the public listener
        self.store = Store.open_reader(store_path)  # reads see committed writes only, never hold the writer up
        self.metrics = Metrics(control, self.store, config)
        self.control = control
        self.urls: dict[str, str] = {}  # listener name -> its base URL
        self._runners: list[web.AppRunner] = []

    async def start(self) -> None:
        api = self.config.api
        logging.getLogger("aiohttp.server").addFilter(_bad_http_is_one_line)
        token = os.environ.get(api.token_env) or None
        try:
            if api.operator.enabled:
                self.urls["operator"] = await self._listen("operator", api.operator, operator_app(
                    self.control, self.store, self.config, self.metrics, token))
            if api.public.enabled:
                self.urls["public"] = await self._listen("public", api.public, public_app(self.store, self.gateway))
        except BaseException:
            await self.stop()
            raise
        if api.operator.enabled and token is None:
            log.info("operator API: mutating routes are off (%s is not set)", api.token_env)

    async def _listen(self, name: str, listener: ListenerSettings, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        try:
            await web.TCPSite(runner, listener.host, listener.port, reuse_address=True).start()
        except OSError as exc:
            raise ConfigError(f"api.{name}: cannot listen on {listener.host}:{listener.port} ({exc.strerror or exc}): "
                              f"another process may hold the port; set api.{name}.port to a free one (0 takes any) "
                              f"or api.{name}.enabled = false") from None
        host, port = runner.addresses[0][:2]
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        log.info("%s API on %s", name, url, extra={"fields": {"listener": name, "url": url}})
        return url

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        self.store.close()
