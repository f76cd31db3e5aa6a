"""The SDK's facilitator-client protocol (verify, settle, supported) over aiohttp: the SDK's own client
needs httpx. Used by every resource server here: the gateway, and the local stack's paywall."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import aiohttp
from x402.schemas import SettleResponse, SupportedResponse, VerifyResponse


class FacilitatorHttp:
    """The SDK's facilitator-client protocol over aiohttp (the SDK's own client needs httpx)."""

    def __init__(self, url: str, session: aiohttp.ClientSession | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._session = session
        self._owned = session is None  # closed by close() only if made here
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._supported: SupportedResponse | None = None

    async def _post(self, path: str, payload: Any, requirements: Any) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = {"x402Version": payload.x402_version,
                "paymentPayload": payload.model_dump(mode="json", by_alias=True, exclude_none=True),
                "paymentRequirements": requirements.model_dump(mode="json", by_alias=True, exclude_none=True)}
        async with self._session.post(f"{self.url}{path}", json=body, allow_redirects=False,
                                      timeout=self._timeout) as resp:
            if resp.status != 200:
                raise ValueError(f"facilitator {path} failed ({resp.status}): {(await resp.text())[:200]}")
            doc: dict[str, Any] = await resp.json()
            return doc

    async def verify(self, payload: Any, requirements: Any) -> VerifyResponse:
        return VerifyResponse.model_validate(await self._post("/verify", payload, requirements))

    async def settle(self, payload: Any, requirements: Any) -> SettleResponse:
        return SettleResponse.model_validate(await self._post("/settle", payload, requirements))

    async def load_supported(self) -> None:
        """Ask the facilitator once what it supports, on the session, following no redirect: the SDK's
        `initialize()` then reads the answer from `get_supported` without blocking the loop."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.get(f"{self.url}/supported", allow_redirects=False, timeout=self._timeout) as resp:
            if resp.status != 200:
                raise ValueError(f"facilitator /supported answered {resp.status}: {(await resp.text())[:200]}")
            self._supported = SupportedResponse.model_validate(await resp.json())

    def get_supported(self) -> SupportedResponse:
        if self._supported is None:  # a caller that did not load it first (the local paywall): once, at start
            with urllib.request.urlopen(f"{self.url}/supported", timeout=10) as resp:
                self._supported = SupportedResponse.model_validate(json.loads(resp.read()))
        return self._supported

    async def close(self) -> None:
        if self._session is not None and self._owned:
            await self._session.close()
