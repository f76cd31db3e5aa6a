"""A local model server speaking three providers' wire formats, for tests, benchmarks and `oracle dev`.

    POST /v1/chat/completions                      OpenAI chat completions   (base_url: `openai_url`)
    POST /v1/messages                              Anthropic Messages        (base_url: `root_url`)
    POST /v1beta/models/{model}:generateContent    Google Gemini             (base_url: `root_url`)

It answers with JSON that follows the request's JSON schema, chosen deterministically from the
prompt (the last user turn). A free chat — no schema, and a user turn that is not the router's typed
message (a JSON object with a `result_type`) — is answered in plain text: `You said: ` and that turn.
It keeps books the tests read: calls and answers per `X-Oracle-Request` and per `[[tag:NAME]]`
in the prompt, replaying (not re-answering) a repeated `Idempotency-Key`. Each reply follows the
provider's documented shape, for success and for every failure below.

Failures come from knobs (a seeded schedule: share of calls failing, and how) or from a marker in
the prompt, which always gets that treatment: `[[refuse]]`, `[[malformed]]`, `[[truncate]]`,
`[[filter]]`, `[[context]]` (context-length error), `[[policy]]` (content-policy error), `[[500]]`,
`[[429]]`, `[[200error]]` (an error inside HTTP 200), `[[402]]` (out of credits), `[[401]]`,
`[[400]]`, `[[timeout]]`. `[[long]]` is no failure: text answers fill the longest string the schema allows.
`[[score:N]]` is none either: an integer answer (or a tuple's first integer) is N, so a demo or a test
can steer a risk score. `[[sleep:MS]]` holds that one call MS milliseconds (at most 60,000) before it is
answered, on top of the latency knob, so a test can keep calls in flight at once on a shared server.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from oracle.devnet.loopback import LoopbackServer
from oracle.devnet.paywall import Paywall
from oracle.devnet.tags import tag_of

FAULTS = ("500", "429", "timeout")
_SCORE = re.compile(r"\[\[score:(\d{1,6})]]")
_SLEEP = re.compile(r"\[\[sleep:(\d{1,5})]]")
_MARKER = re.compile(
    r"\[\[(refuse|malformed|truncate|filter|context|policy|500|429|200error|402|401|400|timeout|long)]]")


@dataclass
class Knobs:
    latency: float = 0.0  # seconds before each answer
    latency_max: float | None = None  # with it, each call waits a seeded draw between latency and this
    error_rate: float = 0.0  # share of calls answered with HTTP 500
    rate_limit_rate: float = 0.0  # share answered with 429 and Retry-After
    malformed_rate: float = 0.0  # share whose content is not valid for the schema
    fail_rate: float = 0.0  # share failing with one of `fail_kinds`, drawn from the seeded schedule
    fail_kinds: tuple[str, ...] = FAULTS
    timeout_sleep: float = 5.0  # how long a "timeout" call hangs before answering
    retry_after: str = "0.05"
    force: str | None = None  # a scenario (as the prompt markers name them) for every call
    seed: int = 7


@dataclass
class Books:
    calls: Counter[str] = field(default_factory=Counter)  # per request key, every HTTP call
    answered: Counter[str] = field(default_factory=Counter)  # per request key, distinct answered attempts
    answers: dict[str, Any] = field(default_factory=dict)  # per request key, the last value answered
    requests: list[dict[str, Any]] = field(default_factory=list)  # bodies received, newest last
    headers: list[dict[str, str]] = field(default_factory=list)  # their headers
    paths: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)  # scheduled failures served, by kind
    tags: Counter[str] = field(default_factory=Counter)  # per prompt tag, every call that reached the model
    tags_answered: Counter[str] = field(default_factory=Counter)  # per prompt tag, calls answered with a value
    total: int = 0  # every call, whatever its key


def seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


# The most values (scalars, arrays, objects) one answer holds. A dynamic array gets one item, so an
# answer grows with its schema, not with 2**depth; fixed sizes still multiply (uint8[9][9][9]...),
# and this bound keeps one request from tying up the server. Past it, arrays are left short.
MAX_ANSWER_VALUES = 10_000


def value_for(schema: dict[str, Any], seed: int, long: bool = False) -> Any:
    """A value that satisfies `schema` (the subset our result schemas use), chosen by `seed`; with `long`,
    free text is as long as the schema allows. At most MAX_ANSWER_VALUES values are built."""
    return _AnswerBuilder(long).value(schema, seed)


class _AnswerBuilder:
    def __init__(self, long: bool) -> None:
        self.long = long
        self.left = MAX_ANSWER_VALUES

    def value(self, schema: dict[str, Any], seed: int) -> Any:
        self.left -= 1
        kind = schema.get("type")
        if "enum" in schema:
            return schema["enum"][seed % len(schema["enum"])]
        if kind == "boolean":
            return seed % 2 == 0
        if kind == "integer":
            lo, hi = int(schema.get("minimum", 0)), int(schema.get("maximum", 2**32))
            return lo + seed % (hi - lo + 1)
        if kind == "string":
            return self._string(schema, seed)
        if kind == "array":
            if "prefixItems" in schema:  # a tuple: every member, however little budget is left
                return [self.value(s, seed + i) for i, s in enumerate(schema["prefixItems"])]
            items: list[Any] = []
            for i in range(int(schema.get("minItems", 1))):
                if self.left <= 0:
                    break
                items.append(self.value(schema["items"], seed + i))
            return items
        if kind == "object":
            return {k: self.value(s, seed) for k, s in schema.get("properties", {}).items()}
        return {"answer": seed % 1000, "ok": True}  # any JSON

    def _string(self, schema: dict[str, Any], seed: int) -> str:
        pattern = schema.get("pattern", "")
        if pattern.startswith("^0x[0-9a-fA-F]{"):
            digits = int(pattern.split("{")[1].split("}")[0])
            return "0x" + hashlib.sha256(str(seed).encode()).hexdigest()[:digits].ljust(digits, "0")
        if pattern:
            return "0x" + hashlib.sha256(str(seed).encode()).hexdigest()[:8]
        text = f"answer {seed % 100_000}"
        limit = int(schema.get("maxLength", len(text)))
        if self.long:
            text = (text + " ") * (limit // (len(text) + 1) + 1)
        return text[:limit]


@dataclass
class _Asked:
    """A request, whatever its wire format."""

    api: str
    model: str
    user: str
    schema: dict[str, Any] | None


class ModelServer(LoopbackServer):
    """Run with `start()` (a thread with its own loop) or `await serve()` in a running loop."""

    def __init__(self, knobs: Knobs | None = None, model_ids: tuple[str, ...] = (),
                 answer_seed: int | None = None, paywall: Paywall | None = None) -> None:
        super().__init__()
        self.paywall = paywall  # x402: every model call paid
        self.knobs = knobs or Knobs()
        self.books = Books()
        self.model_ids = model_ids
        self.answer_seed = answer_seed  # None: answers depend on the prompt only; else on this too
        self._idempotent: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._random = random.Random(self.knobs.seed)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL."""
        return f"{self.root_url}/v1"

    async def opened(self) -> None:
        if self.paywall is not None:
            await self.paywall.start()

    async def closing(self) -> None:
        if self.paywall is not None:
            await self.paywall.facilitator.close()

    def app(self) -> web.Application:
        middlewares = [self.paywall.middleware] if self.paywall is not None else []
        app = web.Application(client_max_size=16 * 1024 * 1024, middlewares=middlewares)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1beta/models/{call}", self._gemini)
        return app

    # ------------------------------------------------------------ the three endpoints

    async def _openai(self, request: web.Request) -> web.Response:
        def parse(doc: dict[str, Any]) -> _Asked:
            fmt = doc.get("response_format")
            schema = fmt["json_schema"]["schema"] if isinstance(fmt, dict) else None
            user = [m["content"] for m in doc["messages"] if m.get("role") == "user"][-1]
            return _Asked("openai", doc["model"], user, schema)

        return await self._serve(request, parse)

    async def _anthropic(self, request: web.Request) -> web.Response:
        def parse(doc: dict[str, Any]) -> _Asked:
            if request.headers.get("anthropic-version") is None or not isinstance(doc.get("max_tokens"), int):
                raise KeyError("anthropic-version header and max_tokens are required")
            fmt = doc.get("output_config", {}).get("format")
            schema = fmt["schema"] if isinstance(fmt, dict) else None
            user = [m["content"] for m in doc["messages"] if m.get("role") == "user"][-1]
            return _Asked("anthropic", doc["model"], user, schema)

        return await self._serve(request, parse)

    async def _gemini(self, request: web.Request) -> web.Response:
        call = request.match_info["call"]
        if not call.endswith(":generateContent"):
            return _error("gemini", 404, "NOT_FOUND", "unknown method")

        def parse(doc: dict[str, Any]) -> _Asked:
            config = doc.get("generationConfig", {})
            schema = config.get("responseJsonSchema")
            user = doc["contents"][-1]["parts"][-1]["text"]
            return _Asked("gemini", call.removesuffix(":generateContent"), user, schema)

        return await self._serve(request, parse)

    # ------------------------------------------------------------ one call

    async def _serve(self, request: web.Request, parse: Any) -> web.Response:
        key = request.headers.get("X-Oracle-Request", "")
        idem = request.headers.get("Idempotency-Key", "")
        with self._lock:
            self.books.calls[key] += 1
            self.books.total += 1
            if idem and idem in self._idempotent:
                status, body, headers = self._idempotent[idem]
                return web.Response(status=status, body=body, headers=headers, content_type="application/json")
        api = "gemini" if "generateContent" in request.path else ("anthropic" if "messages" in request.path
                                                                  else "openai")
        try:
            doc = await request.json()
            asked: _Asked = parse(doc)
            if not isinstance(asked.user, str):
                raise TypeError
        except (ValueError, KeyError, TypeError, IndexError, StopIteration, AttributeError):
            return _error(api, 400, "invalid_request_error", "the request body is not what this API takes")
        if self.model_ids and asked.model not in self.model_ids:
            return _error(api, 404, "not_found_error", f"model {asked.model} does not exist")
        with self._lock:
            self.books.requests.append(doc)
            self.books.headers.append(dict(request.headers))
            self.books.paths.append(request.path)
            tag = tag_of(asked.user)
            if tag is not None:
                self.books.tags[tag] += 1
            roll = self._random.random()
            delay = self.knobs.latency
            if self.knobs.latency_max is not None:
                delay = self._random.uniform(self.knobs.latency, self.knobs.latency_max)
            fault = self._random.choice(self.knobs.fail_kinds) if roll < self.knobs.fail_rate else None
            if fault:
                self.books.faults[fault] += 1
        sleep = _SLEEP.search(asked.user)
        if sleep is not None:
            delay += min(int(sleep.group(1)), 60_000) / 1000
        if delay:
            await asyncio.sleep(delay)
        marker = _MARKER.search(asked.user)
        scenario = marker.group(1) if marker else (self.knobs.force or fault)
        if scenario is None:
            if roll < self.knobs.error_rate:
                scenario = "500"
            elif roll < self.knobs.error_rate + self.knobs.rate_limit_rate:
                scenario = "429"
            elif roll > 1 - self.knobs.malformed_rate:
                scenario = "malformed"
        if scenario == "timeout":
            await asyncio.sleep(self.knobs.timeout_sleep)
            scenario = "500"
        failure = _failure(api, scenario, self.knobs.retry_after)
        if failure is not None:
            return failure
        seed = seed_of(asked.user if self.answer_seed is None else f"{self.answer_seed}:{asked.user}")
        value: Any = None
        if scenario in ("refuse", "filter", "malformed", "truncate"):
            content = '{"value": "not what the schema asked for"'
        elif asked.schema is None and not _typed(asked.user):
            value = content = f"You said: {asked.user}"
        else:
            value = value_for((asked.schema or {}).get("properties", {}).get("value", {"type": "string"}), seed,
                              long=scenario == "long")
            score = _SCORE.search(asked.user)
            if score is not None:
                value = _steered(value, int(score.group(1)))
            content = json.dumps({"value": value})
        body = _render(api, asked.model, scenario, content, len(asked.user) // 4 + 20, seed)
        with self._lock:
            if idem:
                self._idempotent[idem] = (200, body, {})
            if value is not None:
                self.books.answered[key] += 1
                self.books.answers[key] = value
                if tag is not None:
                    self.books.tags_answered[tag] += 1
        return web.Response(status=200, body=body, content_type="application/json")


def _typed(user: str) -> bool:
    """Is `user` the router's message for a typed request, which is answered {"value": ...} even when
    the deployment takes no schema?"""
    try:
        doc = json.loads(user)
    except (ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "result_type" in doc


def _steered(value: Any, score: int) -> Any:
    """`value` with its integer (or a tuple's first integer) replaced by `score`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return score
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, int) and not isinstance(item, bool):
                return [*value[:i], score, *value[i + 1:]]
    return value


def _render(api: str, model: str, scenario: str | None, content: str, prompt_tokens: int, seed: int) -> bytes:
    """A success body in the provider's shape; `scenario` picks refusal, filter or truncation."""
    if api == "openai":
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        finish = {"filter": "content_filter", "truncate": "length"}.get(scenario or "", "stop")
        if scenario == "refuse":
            message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
        return json.dumps({
            "id": f"chatcmpl-{seed:x}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 12, "total_tokens": prompt_tokens + 12,
                      "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}},
        }).encode()
    if api == "anthropic":
        stop = {"filter": "refusal", "truncate": "max_tokens"}.get(scenario or "", "end_turn")
        text = "I can't help with that." if scenario == "refuse" else content
        return json.dumps({
            "id": f"msg_{seed:x}", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 12, "cache_read_input_tokens": 0,
                      "cache_creation_input_tokens": 0},
        }).encode()
    finish = {"filter": "SAFETY", "truncate": "MAX_TOKENS"}.get(scenario or "", "STOP")
    text = "I can't help with that." if scenario == "refuse" else content
    return json.dumps({
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": finish,
                        "index": 0}],
        "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": 12,
                          "totalTokenCount": prompt_tokens + 12},
        "modelVersion": model, "responseId": f"{seed:x}",
    }).encode()


# Each failure scenario: (HTTP status, OpenAI type/code, Anthropic type, Gemini status, message).
_FAILURES: dict[str, tuple[int, str, str, str, str]] = {
    "500": (500, "server_error", "api_error", "INTERNAL", "The server had an error while processing your request"),
    "429": (429, "rate_limit_exceeded", "rate_limit_error", "RESOURCE_EXHAUSTED", "Rate limit reached"),
    "402": (402, "insufficient_quota", "billing_error", "FAILED_PRECONDITION", "You exceeded your current quota"),
    "401": (401, "invalid_api_key", "authentication_error", "UNAUTHENTICATED", "Incorrect API key provided"),
    "400": (400, "invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT", "Invalid value for 'x'"),
    "context": (400, "context_length_exceeded", "invalid_request_error", "INVALID_ARGUMENT",
                "This model's maximum context length is 4096 tokens; prompt is too long: 9000 tokens > 4096 maximum; "
                "The input token count (9000) exceeds the maximum number of tokens allowed (4096)."),
    "policy": (400, "content_policy_violation", "invalid_request_error", "INVALID_ARGUMENT",
               "Your request was rejected as a result of our content policy / safety system."),
}


def _failure(api: str, scenario: str | None, retry_after: str) -> web.Response | None:
    if scenario == "200error":
        return _error(api, 200, "server_error", "upstream provider error")
    if scenario not in _FAILURES:
        return None
    status, openai_code, anthropic_type, gemini_status, message = _FAILURES[scenario]
    code = {"openai": openai_code, "anthropic": anthropic_type, "gemini": gemini_status}[api]
    response = _error(api, status, code, message)
    if scenario == "429":
        if api == "gemini":  # Google says how long in RetryInfo, not in a header
            return web.json_response({"error": {"code": 429, "message": message, "status": code, "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"}]}},
                status=429)
        response.headers["Retry-After"] = retry_after
    return response


def _error(api: str, status: int, code: str, message: str) -> web.Response:
    if api == "anthropic":
        doc: dict[str, Any] = {"type": "error", "error": {"type": code, "message": message}}
    elif api == "gemini":
        doc = {"error": {"code": status, "message": message, "status": code}}
    else:
        doc = {"error": {"message": message, "type": code, "param": None, "code": code}}
    return web.json_response(doc, status=status)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    paid = parser.add_argument_group("x402 paywall (every model call paid; give all of these or none)")
    paid.add_argument("--x402-price", type=int, help="price of one call in the asset's base units")
    paid.add_argument("--facilitator", help="URL of the x402 facilitator that verifies and settles payments")
    paid.add_argument("--network", help="CAIP-2 network of the payment, e.g. eip155:31337")
    paid.add_argument("--asset", help="EIP-3009 token address payments are made in")
    paid.add_argument("--pay-to", help="address the payments go to")


def serve_forever(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; prints `listening on URL` once it answers."""
    paid = [args.x402_price, args.facilitator, args.network, args.asset, args.pay_to]
    if any(v is not None for v in paid) and not all(v is not None for v in paid):
        print("a paywalled model server needs all of --x402-price, --facilitator, --network, --asset and --pay-to",
              file=sys.stderr)
        return 2
    paywall = (Paywall(args.facilitator, args.network, args.asset, args.pay_to, args.x402_price)
               if args.x402_price is not None else None)

    server = ModelServer(Knobs(latency=args.latency), paywall=paywall)
    per_call = f"; {args.x402_price} units a call over x402" if paywall else ""
    return server.serve_until_signalled(
        args.port, lambda: f"listening on {server.base_url} (OpenAI wire format{per_call})")


def main() -> None:
    """`python -m oracle.devnet.model_server --port N`: serve until stopped (see `oracle model-server -h`)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    add_arguments(parser)
    sys.exit(serve_forever(parser.parse_args()))


if __name__ == "__main__":
    main()
