"""A local model server speaking the OpenAI chat-completions wire format, for tests and `oracle dev`.

It answers `POST /v1/chat/completions` with JSON that follows the request's `response_format` JSON
schema, chosen deterministically from the prompt, and keeps books the tests read: calls and answers
per `X-Oracle-Request`, replaying (not re-answering) a repeated `Idempotency-Key`. Knobs add latency,
errors (HTTP 500 / 429 with Retry-After / HTTP-200 error bodies) and malformed answers; a prompt that
contains `[[malformed]]` or `[[refuse]]` always gets that treatment.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from oracle.devnet.loopback import LoopbackServer


@dataclass
class Knobs:
    latency: float = 0.0  # seconds before each answer
    error_rate: float = 0.0  # share of calls answered with HTTP 500
    rate_limit_rate: float = 0.0  # share answered with 429 and Retry-After
    malformed_rate: float = 0.0  # share whose content is not valid for the schema
    seed: int = 7


@dataclass
class Books:
    calls: Counter[str] = field(default_factory=Counter)  # per request key, every HTTP call
    answered: Counter[str] = field(default_factory=Counter)  # per request key, distinct answered attempts
    answers: dict[str, Any] = field(default_factory=dict)  # per request key, the last value answered
    requests: list[dict[str, Any]] = field(default_factory=list)  # bodies received, newest last


def _seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def value_for(schema: dict[str, Any], seed: int) -> Any:
    """A value that satisfies `schema` (the subset our result schemas use), chosen by `seed`."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][seed % len(schema["enum"])]
    if kind == "boolean":
        return seed % 2 == 0
    if kind == "integer":
        lo, hi = int(schema.get("minimum", 0)), int(schema.get("maximum", 2**32))
        return lo + seed % (hi - lo + 1)
    if kind == "string":
        pattern = schema.get("pattern", "")
        if pattern.startswith("^0x[0-9a-fA-F]{"):
            digits = int(pattern.split("{")[1].split("}")[0])
            return "0x" + hashlib.sha256(str(seed).encode()).hexdigest()[:digits].ljust(digits, "0")
        if pattern:
            return "0x" + hashlib.sha256(str(seed).encode()).hexdigest()[:8]
        text = f"answer {seed % 100_000}"
        return text[: int(schema.get("maxLength", len(text)))]
    if kind == "array":
        if "prefixItems" in schema:
            return [value_for(s, seed + i) for i, s in enumerate(schema["prefixItems"])]
        length = int(schema.get("minItems", 2))
        return [value_for(schema["items"], seed + i) for i in range(length)]
    if kind == "object":
        return {k: value_for(s, seed) for k, s in schema.get("properties", {}).items()}
    return {"answer": seed % 1000, "ok": True}  # any JSON


class ModelServer(LoopbackServer):
    """Run with `start()` (a thread with its own loop) or `await serve()` in a running loop."""

    def __init__(self, knobs: Knobs | None = None, model_ids: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.knobs = knobs or Knobs()
        self.books = Books()
        self.model_ids = model_ids
        self._idempotent: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()
        self._random = random.Random(self.knobs.seed)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        return app

    # ------------------------------------------------------------ the endpoint

    async def _completions(self, request: web.Request) -> web.Response:
        key = request.headers.get("X-Oracle-Request", "")
        idem = request.headers.get("Idempotency-Key", "")
        with self._lock:
            self.books.calls[key] += 1
            if idem and idem in self._idempotent:
                status, body = self._idempotent[idem]
                return web.Response(status=status, body=body, content_type="application/json")
        try:
            doc = await request.json()
            messages = doc["messages"]
            schema = doc["response_format"]["json_schema"]["schema"]
            model = doc["model"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "invalid_request_error", "body must have model, messages and a json_schema "
                                                        "response_format")
        if self.model_ids and model not in self.model_ids:
            return _error(404, "not_found_error", f"The model `{model}` does not exist")
        user = next((m["content"] for m in messages if m.get("role") == "user"), "")
        with self._lock:
            self.books.requests.append(doc)
            roll = self._random.random()
        if self.knobs.latency:
            await asyncio.sleep(self.knobs.latency)
        if roll < self.knobs.error_rate:
            return _error(500, "server_error", "The server had an error while processing your request")
        if roll < self.knobs.error_rate + self.knobs.rate_limit_rate:
            response = _error(429, "rate_limit_error", "Rate limit reached")
            response.headers["Retry-After"] = "0.05"
            return response
        seed = _seed_of(user)
        if "[[refuse]]" in user:
            message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
            finish = "stop"
            value: Any = None
        elif "[[malformed]]" in user or roll > 1 - self.knobs.malformed_rate:
            message = {"role": "assistant", "content": '{"value": "not what the schema asked for"', "refusal": None}
            finish = "stop"
            value = None
        else:
            value = value_for(schema["properties"]["value"], seed)
            message = {"role": "assistant", "content": json.dumps({"value": value}), "refusal": None}
            finish = "stop"
        body = json.dumps({
            "id": f"chatcmpl-{seed:x}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": len(user) // 4 + 20, "completion_tokens": 12,
                      "total_tokens": len(user) // 4 + 32, "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}},
        }).encode()
        with self._lock:
            if idem:
                self._idempotent[idem] = (200, body)
            if value is not None:
                self.books.answered[key] += 1
                self.books.answers[key] = value
        return web.Response(status=200, body=body, content_type="application/json")


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": None}},
                             status=status)


def main() -> None:
    """`python -m oracle.devnet.model_server --port N [--latency S]`: serve until killed."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()

    async def serve() -> None:
        server = ModelServer(Knobs(latency=args.latency))
        await server.serve(args.port)
        print(f"listening on {server.base_url}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
