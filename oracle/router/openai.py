"""Adapter for OpenAI-compatible chat completions (OpenAI, OpenRouter, DeepSeek, vLLM, Ollama, ...).

Speaks the wire format only: one POST to `{base_url}/chat/completions` on the shared aiohttp
session, the reply mapped to one outcome: ok, truncated, refused, filtered, malformed or error.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from oracle.config import ModelDeployment
from oracle.results import load_untrusted_json


@dataclass
class ProviderReply:
    outcome: str  # ok | truncated | refused | filtered | malformed | error
    text: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    raw: bytes = b""
    http_status: int = 0
    error: str = ""
    retryable: bool = False
    retry_after: float | None = None
    latency_ms: int = 0

    @property
    def raw_sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest() if self.raw else ""


_FINISH = {"stop": "ok", "length": "truncated", "content_filter": "filtered"}


class OpenAIChat:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def complete(self, d: ModelDeployment, *, system: str, user: str, schema: dict[str, Any],
                       max_tokens: int, temperature: int, seed: int, headers: dict[str, str]) -> ProviderReply:
        body = {
            "model": d.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": min(max_tokens, d.max_output),
            "temperature": temperature / 100,
            "seed": seed,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "oracle_answer", "strict": True, "schema": schema}},
        }
        request_headers = dict(headers)
        if d.api_key_env:
            request_headers["Authorization"] = f"Bearer {os.environ.get(d.api_key_env, '')}"
        started = time.perf_counter()
        try:
            async with self._session.post(f"{d.base_url}/chat/completions", json=body, headers=request_headers,
                                          timeout=aiohttp.ClientTimeout(total=d.timeout)) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return ProviderReply("error", error=f"{type(exc).__name__}: {exc}", retryable=True,
                                 latency_ms=_ms(started))
        reply = _parse(status, raw)
        reply.retry_after = retry_after
        reply.latency_ms = _ms(started)
        return reply


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _parse(status: int, raw: bytes) -> ProviderReply:
    try:
        doc = load_untrusted_json(raw)
    except ValueError:
        return ProviderReply("error", raw=raw, http_status=status, error=f"HTTP {status}: body is not JSON",
                             retryable=status >= 500 or status in (408, 429))
    if not isinstance(doc, dict):
        return ProviderReply("error", raw=raw, http_status=status, error=f"HTTP {status}: body is not an object")
    if status != 200 or "error" in doc:
        err = doc.get("error")
        message = err.get("message", "") if isinstance(err, dict) else str(err)
        return ProviderReply("error", raw=raw, http_status=status, error=f"HTTP {status}: {message}"[:500],
                             retryable=status >= 500 or status in (408, 429) or (status == 200 and "error" in doc))
    usage = _usage(doc.get("usage"))
    try:
        choice = doc["choices"][0]
        message = choice["message"]
        finish = choice.get("finish_reason") or "stop"
        if not isinstance(message, dict) or not isinstance(finish, str):
            raise TypeError
    except (KeyError, IndexError, TypeError, AttributeError):
        return ProviderReply("malformed", raw=raw, http_status=status, usage=usage,
                             error="no choices[0].message with a finish_reason")
    if message.get("refusal"):
        return ProviderReply("refused", raw=raw, http_status=status, usage=usage, error=str(message["refusal"])[:500])
    content = message.get("content")
    if not isinstance(content, str):
        return ProviderReply("malformed", raw=raw, http_status=status, usage=usage, error="content is not text")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        return ProviderReply("malformed", raw=raw, http_status=status, usage=usage, error="content is not UTF-8")
    return ProviderReply(_FINISH.get(finish, "error"), text=content, raw=raw, http_status=status, usage=usage,
                         error="" if finish in _FINISH else f"finish_reason {finish!r}")


def _usage(u: Any) -> dict[str, int]:
    if not isinstance(u, dict):
        return {}

    def n(v: Any) -> int:
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0

    details_in = u.get("prompt_tokens_details") or {}
    details_out = u.get("completion_tokens_details") or {}
    return {"input": n(u.get("prompt_tokens")), "output": n(u.get("completion_tokens")),
            "cached": n(details_in.get("cached_tokens")) if isinstance(details_in, dict) else 0,
            "reasoning": n(details_out.get("reasoning_tokens")) if isinstance(details_out, dict) else 0}
