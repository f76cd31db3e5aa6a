"""OpenAI chat completions: OpenAI, OpenRouter, GateRouter, DeepSeek, vLLM, Ollama, llama.cpp.

POST `{base_url}/chat/completions` with the system and user messages (a chat's turns as given),
`max_tokens`, `temperature` (0..2), `seed`, and a strict `json_schema` response format (or `json_object`
with the schema beside it, as llama-cpp-python's server takes it: the deployment's `schema_format`;
none for a free-text chat). The reply's `finish_reason`
gives the outcome (stop, length, content_filter); `message.refusal` is the model declining. Errors are
`{"error": {"message", "type", "code"}}`, context-length errors as 400 `context_length_exceeded`.
OpenRouter reports what a call cost in `usage.cost` (dollars); it is used instead of catalog prices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oracle.config import ModelDeployment
from oracle.results import bounds_as_enums
from oracle.router.adapters.base import (
    TRANSIENT,
    Call,
    ProviderReply,
    answer_text,
    api_key,
    body_bytes,
    count,
    error_body,
    json_object,
    micro_usd,
)

_FINISH = {"stop": "ok", "length": "truncated", "content_filter": "filtered"}


class OpenAIChat:
    def request(self, d: ModelDeployment, call: Call) -> tuple[str, dict[str, str], bytes]:
        turns = call.messages or (("system", call.system), ("user", call.user))
        doc: dict[str, Any] = {
            "model": d.model,
            "messages": [{"role": role, "content": content} for role, content in turns],
            "max_tokens": min(call.max_tokens, d.max_output),
            "temperature": min(call.temperature, 200) / 100,
        }
        if "seed" in d.capabilities:
            doc["seed"] = call.seed
        if "json_schema" in d.capabilities and call.schema:
            doc["response_format"] = _response_format(d, call.schema)
        headers = {"Content-Type": "application/json", **call.headers}
        if d.payer == "api_key":
            headers["Authorization"] = f"Bearer {api_key(d)}"
        return f"{d.base_url}/chat/completions", headers, body_bytes(doc)

    def parse(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderReply:
        return parse_chat(status, raw)


def _response_format(d: ModelDeployment, schema: dict[str, Any]) -> dict[str, Any]:
    """The answer's schema in the form the deployment's server takes (its `schema_format`)."""
    if d.schema_format == "json_object":
        # llama-cpp-python's server: the schema beside type json_object, turned into a grammar there that
        # ignores integer bounds, so small ranges are spelled out.
        return {"type": "json_object", "schema": bounds_as_enums(schema)}
    return {"type": "json_schema", "json_schema": {"name": "oracle_answer", "strict": True, "schema": schema}}


def parse_chat(status: int, raw: bytes) -> ProviderReply:
    doc = json_object(status, raw)
    if isinstance(doc, ProviderReply):
        return doc
    if status != 200 or "error" in doc:
        return error_body(status, raw, doc.get("error"), "code", "type")
    usage = _usage(doc.get("usage"))
    reported = micro_usd(doc["usage"].get("cost")) if isinstance(doc.get("usage"), dict) else None
    try:
        choice = doc["choices"][0]
        message = choice["message"]
        finish = choice.get("finish_reason") or "stop"
        if not isinstance(message, dict) or not isinstance(finish, str):
            raise TypeError
    except (KeyError, IndexError, TypeError, AttributeError):
        return ProviderReply("malformed", raw=raw, http_status=status, usage=usage, reported_cost=reported,
                             error="no choices[0].message with a finish_reason")
    if message.get("refusal"):
        return ProviderReply("refused", raw=raw, http_status=status, usage=usage, reported_cost=reported,
                             error=str(message["refusal"])[:500])
    content = message.get("content")
    if finish == "content_filter":
        content = content if isinstance(content, str) else ""
    text = answer_text(content, status, raw, usage)
    if isinstance(text, ProviderReply):
        text.reported_cost = reported
        return text
    outcome = _FINISH.get(finish, "error")
    return ProviderReply(outcome, TRANSIENT if outcome == "error" else "", text=text, raw=raw, http_status=status,
                         usage=usage, reported_cost=reported,
                         error="" if outcome != "error" else f"finish_reason {finish!r}")


def _usage(u: Any) -> dict[str, int]:
    if not isinstance(u, dict):
        return {}
    details_in = u.get("prompt_tokens_details")
    details_out = u.get("completion_tokens_details")
    return {"input": count(u.get("prompt_tokens")), "output": count(u.get("completion_tokens")),
            "cached": count(details_in.get("cached_tokens")) if isinstance(details_in, dict) else 0,
            "reasoning": count(details_out.get("reasoning_tokens")) if isinstance(details_out, dict) else 0}
