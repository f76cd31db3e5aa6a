"""Each adapter against a local server speaking its provider's wire format: the request it sends, and the
outcome and error class it gives every documented reply (success, JSON output, refusal, truncation,
429 with Retry-After, 500, an error inside HTTP 200, context-length and content-policy errors)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from oracle.config import ModelDeployment
from oracle.devnet.model_server import ModelServer
from oracle.router.adapters import FORMATS, Call, send
from oracle.router.adapters.anthropic import AnthropicMessages
from oracle.router.adapters.base import CONTENT_POLICY, CONTEXT_LENGTH, FATAL, TRANSIENT, UNAVAILABLE, retry_after
from oracle.router.adapters.gemini import GeminiGenerateContent
from oracle.router.adapters.openai import OpenAIChat, parse_chat
from tests.router.conftest import dep, deployment

SCHEMA = {"type": "object", "properties": {"value": {"type": "integer", "minimum": 0, "maximum": 100}},
          "required": ["value"], "additionalProperties": False}
APIS = ("openai", "anthropic", "gemini")


def _call(user: str, key: str = "k1") -> Call:
    return Call("SYSTEM PROMPT", json.dumps({"data": user}), SCHEMA, 300, 70, 42,
                {"X-Oracle-Request": key, "Idempotency-Key": f"{key}/1"})


async def _send(server: ModelServer, api: str, user: str, **fields: Any) -> Any:
    d = deployment("d", server, api, **fields)
    async with aiohttp.ClientSession() as session:
        return await send(session, FORMATS[api], d, _call(user), 5.0)


# ---------------------------------------------------------------- request shapes


async def test_openai_request_shape(servers: Callable[..., ModelServer], monkeypatch: pytest.MonkeyPatch) -> None:
    server = servers()
    monkeypatch.setenv("OPENAI_TEST_KEY", "sk-test")
    reply = await _send(server, "openai", "hello", payer="api_key", api_key_env="OPENAI_TEST_KEY")
    assert reply.outcome == "ok" and json.loads(reply.text)["value"] in range(101)
    body, headers = server.books.requests[-1], server.books.headers[-1]
    assert server.books.paths[-1] == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test" and headers["Idempotency-Key"] == "k1/1"
    assert body["model"] == "d-2026-01-01" and body["max_tokens"] == 300 and body["temperature"] == 0.7
    assert body["seed"] == 42
    assert body["messages"] == [{"role": "system", "content": "SYSTEM PROMPT"},
                                {"role": "user", "content": json.dumps({"data": "hello"})}]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "oracle_answer",
                                                                              "strict": True, "schema": SCHEMA}}
    assert reply.usage == {"input": reply.usage["input"], "output": 12, "cached": 0, "reasoning": 0}


def test_openai_json_object_format_sends_the_schema_beside_the_type_with_small_ranges_listed() -> None:
    """llama-cpp-python's server takes the schema this way (and refuses type json_schema); its grammar
    ignores minimum and maximum, so the range goes as an enum too."""
    d = ModelDeployment.model_validate({"id": "llama", "provider": "llama-cpp", "api": "openai",
                                        "base_url": "http://127.0.0.1:8000/v1", "model": "m-q4", "payer": "none",
                                        "context_window": 4096, "max_output": 1024, "capabilities": ["json_schema"],
                                        "schema_format": "json_object"})
    _, _, body = OpenAIChat().request(d, _call("hello"))
    value = {"type": "integer", "minimum": 0, "maximum": 100, "enum": list(range(101))}
    assert json.loads(body)["response_format"] == {"type": "json_object",
                                                   "schema": {**SCHEMA, "properties": {"value": value}}}


async def test_anthropic_request_shape(servers: Callable[..., ModelServer],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    server = servers()
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "sk-ant-test")
    reply = await _send(server, "anthropic", "hello", payer="api_key", api_key_env="ANTHROPIC_TEST_KEY",
                        capabilities=["json_schema"])
    assert reply.outcome == "ok" and json.loads(reply.text)["value"] in range(101)
    body, headers = server.books.requests[-1], server.books.headers[-1]
    assert server.books.paths[-1] == "/v1/messages"
    assert headers["x-api-key"] == "sk-ant-test" and headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in headers
    assert body["system"] == "SYSTEM PROMPT" and body["max_tokens"] == 300 and body["temperature"] == 0.7
    assert body["messages"] == [{"role": "user", "content": json.dumps({"data": "hello"})}]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert "seed" not in body  # Anthropic has none


async def test_gemini_request_shape(servers: Callable[..., ModelServer], monkeypatch: pytest.MonkeyPatch) -> None:
    server = servers()
    monkeypatch.setenv("GEMINI_TEST_KEY", "g-test")
    reply = await _send(server, "gemini", "hello", payer="api_key", api_key_env="GEMINI_TEST_KEY")
    assert reply.outcome == "ok" and json.loads(reply.text)["value"] in range(101)
    body, headers = server.books.requests[-1], server.books.headers[-1]
    assert server.books.paths[-1] == "/v1beta/models/d-2026-01-01:generateContent"
    assert headers["x-goog-api-key"] == "g-test"
    assert body["systemInstruction"] == {"parts": [{"text": "SYSTEM PROMPT"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": json.dumps({"data": "hello"})}]}]
    assert body["generationConfig"] == {"maxOutputTokens": 300, "temperature": 0.7, "seed": 42,
                                        "responseMimeType": "application/json", "responseJsonSchema": SCHEMA}


async def test_max_tokens_is_capped_by_the_deployment_and_optional_fields_follow_capabilities(
        servers: Callable[..., ModelServer]) -> None:
    server = servers()
    await _send(server, "openai", "hello", max_output=100, capabilities=[])
    body = server.books.requests[-1]
    assert body["max_tokens"] == 100 and "seed" not in body and "response_format" not in body


# ---------------------------------------------------------------- a gateway chat's turns

# Two system turns (one late), and two user turns in a row: what OpenAI takes and the others do not.
CHAT = (("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "What is 2+2?"),
        ("user", "Answer in words."), ("system", "No emojis."))


def _chat_body(api: str, schema: dict[str, Any] | None = None,
               messages: tuple[tuple[str, str], ...] = CHAT) -> dict[str, Any]:
    call = Call("", "", schema or {}, 300, 70, 42, {}, messages)
    _, _, body = FORMATS[api].request(dep("d", api=api), call)
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def test_openai_sends_a_chat_s_turns_as_given() -> None:
    body = _chat_body("openai")
    assert body["messages"] == [{"role": role, "content": content} for role, content in CHAT]
    assert "response_format" not in body  # free text: no format, though the deployment could take one
    assert _chat_body("openai", SCHEMA)["response_format"]["json_schema"]["schema"] == SCHEMA


def test_anthropic_takes_a_chat_s_system_turns_apart_and_alternating_roles() -> None:
    body = _chat_body("anthropic")
    assert body["system"] == "Be brief.\n\nNo emojis."
    assert body["messages"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                                {"role": "user", "content": "What is 2+2?\n\nAnswer in words."}]
    assert "output_config" not in body
    assert _chat_body("anthropic", SCHEMA)["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert "system" not in _chat_body("anthropic", messages=(("user", "Hi"),))


def test_gemini_takes_a_chat_s_system_turns_apart_and_calls_the_assistant_model() -> None:
    body = _chat_body("gemini")
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "No emojis."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]},
                                {"role": "model", "parts": [{"text": "Hello!"}]},
                                {"role": "user", "parts": [{"text": "What is 2+2?"}, {"text": "Answer in words."}]}]
    assert "responseMimeType" not in body["generationConfig"]
    assert _chat_body("gemini", SCHEMA)["generationConfig"]["responseJsonSchema"] == SCHEMA
    assert "systemInstruction" not in _chat_body("gemini", messages=(("user", "Hi"),))


# ---------------------------------------------------------------- replies, per scenario and format

# marker -> (outcome, error class, Retry-After seconds or None)
SCENARIOS: dict[str, tuple[str, str, float | None]] = {
    "truncate": ("truncated", "", None),
    "filter": ("filtered", "", None),
    "malformed": ("ok", "", None),  # well-formed reply, broken answer text: the router's parse catches it
    "429": ("error", TRANSIENT, 0.05),
    "500": ("error", TRANSIENT, None),
    "200error": ("error", TRANSIENT, None),
    "context": ("error", CONTEXT_LENGTH, None),
    "policy": ("error", CONTENT_POLICY, None),
    "402": ("error", UNAVAILABLE, None),
    "401": ("error", FATAL, None),
    "400": ("error", FATAL, None),
}


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("marker", sorted(SCENARIOS))
async def test_reply_outcomes(servers: Callable[..., ModelServer], api: str, marker: str) -> None:
    server = servers()
    reply = await _send(server, api, f"please [[{marker}]]")
    outcome, kind, wait = SCENARIOS[marker]
    assert (reply.outcome, reply.kind) == (outcome, kind), reply.error
    assert reply.retry_after == wait
    assert reply.raw and len(reply.raw_sha256) == 64
    if outcome == "error":
        assert reply.http_status in (200, 400, 401, 402, 429, 500) and reply.error


@pytest.mark.parametrize("api", APIS)
async def test_a_refusal(servers: Callable[..., ModelServer], api: str) -> None:
    reply = await _send(servers(), api, "please [[refuse]]")
    # OpenAI says so in message.refusal; the others refuse in plain text, which no schema accepts.
    assert reply.outcome == ("refused" if api == "openai" else "ok")
    assert reply.outcome == "refused" or "can't" in reply.text


@pytest.mark.parametrize("api", APIS)
async def test_a_timeout_and_a_refused_connection_are_transient(servers: Callable[..., ModelServer],
                                                                api: str) -> None:
    from oracle.devnet.model_server import Knobs

    server = servers(Knobs(force="timeout", timeout_sleep=2.0))
    d = deployment("d", server, api)
    async with aiohttp.ClientSession() as session:
        reply = await send(session, FORMATS[api], d, _call("x"), 0.2)
        assert (reply.outcome, reply.kind) == ("error", TRANSIENT) and "Timeout" in reply.error
        closed = deployment("d", server, api, base_url="http://127.0.0.1:9")
        reply = await send(session, FORMATS[api], closed, _call("x"), 1.0)
        assert (reply.outcome, reply.kind) == ("error", TRANSIENT)


# ---------------------------------------------------------------- documented bodies, parsed directly


def test_openrouter_reported_cost_is_used_and_rounded_up() -> None:
    raw = json.dumps({"id": "gen-1", "choices": [{"message": {"role": "assistant", "content": '{"value": 1}'},
                                                  "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196,
                                "cost": 0.0000971, "prompt_tokens_details": {"cached_tokens": 128},
                                "completion_tokens_details": {"reasoning_tokens": 0}}}).encode()
    reply = parse_chat(200, raw)
    assert reply.outcome == "ok" and reply.reported_cost == 98  # 97.1 micro-USD, rounded up
    assert reply.usage == {"input": 194, "output": 2, "cached": 128, "reasoning": 0}


@pytest.mark.parametrize("cost", [-1, "0.1", True, 1e400])
def test_a_nonsense_reported_cost_is_ignored(cost: Any) -> None:
    raw = ('{"choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}], "usage": {"cost": '
           + (json.dumps(cost) if cost != 1e400 else "1e400") + "}}").encode()
    assert parse_chat(200, raw).reported_cost is None


def test_absurd_usage_and_cost_claims_are_bounded() -> None:
    raw = json.dumps({"choices": [{"message": {"content": '{"value": 1}'}, "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 10**30, "completion_tokens": 10**25, "cost": 1e20}}).encode()
    reply = parse_chat(200, raw)
    assert reply.usage["input"] == 2**40 and reply.usage["output"] == 2**40 and reply.reported_cost is None


def test_anthropic_usage_counts_cache_reads_as_input() -> None:
    raw = json.dumps({"type": "message", "content": [{"type": "text", "text": '{"value": 3}'}],
                      "stop_reason": "end_turn",
                      "usage": {"input_tokens": 20, "output_tokens": 9, "cache_read_input_tokens": 1000,
                                "cache_creation_input_tokens": 5}}).encode()
    reply = AnthropicMessages().parse(200, {}, raw)
    assert reply.outcome == "ok" and reply.usage == {"input": 1025, "output": 9, "cached": 1000, "reasoning": 0}


def test_anthropic_overloaded_529_is_transient() -> None:
    raw = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    reply = AnthropicMessages().parse(529, {}, raw)
    assert (reply.outcome, reply.kind) == ("error", TRANSIENT)


def test_anthropic_request_too_large_is_context_length() -> None:
    raw = b'{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum size"}}'
    assert AnthropicMessages().parse(413, {}, raw).kind == CONTEXT_LENGTH


def test_gemini_thoughts_count_as_output_and_are_not_the_answer() -> None:
    raw = json.dumps({"candidates": [{"content": {"parts": [{"text": "let me think", "thought": True},
                                                            {"text": '{"value": 5}'}], "role": "model"},
                                      "finishReason": "STOP"}],
                      "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 6, "thoughtsTokenCount": 40,
                                        "cachedContentTokenCount": 32}}).encode()
    reply = GeminiGenerateContent().parse(200, {}, raw)
    assert reply.outcome == "ok" and reply.text == '{"value": 5}'
    assert reply.usage == {"input": 50, "output": 46, "cached": 32, "reasoning": 40}


def test_gemini_blocked_prompt_is_filtered() -> None:
    raw = b'{"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}}'
    assert GeminiGenerateContent().parse(200, {}, raw).outcome == "filtered"


def test_gemini_unavailable_is_transient_and_retry_info_is_read() -> None:
    raw = json.dumps({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
    assert GeminiGenerateContent().parse(503, {}, raw.encode()).kind == TRANSIENT
    raw = json.dumps({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}]}})
    reply = GeminiGenerateContent().parse(429, {}, raw.encode())
    assert (reply.kind, reply.retry_after) == (TRANSIENT, 13.0)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("raw", [b"", b"<html>502 Bad Gateway</html>", b"[1,2]", b'{"a":' * 200, b"\xff\xfe",
                                 b'{"choices": "nope", "candidates": 7, "content": 3, "stop_reason": 4}'])
def test_hostile_bodies_get_an_outcome_not_an_exception(api: str, raw: bytes) -> None:
    for status in (200, 502):
        reply = FORMATS[api].parse(status, {}, raw)
        assert reply.outcome in ("error", "malformed")
        assert reply.outcome == "malformed" or reply.kind in (TRANSIENT, FATAL, UNAVAILABLE)


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    assert retry_after("2.5") == 2.5 and retry_after("-3") == 0.0 and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    assert retry_after(None) is None
