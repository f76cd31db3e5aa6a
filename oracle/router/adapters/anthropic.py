"""Anthropic Messages: POST `{base_url}/v1/messages`.

The system prompt is the top-level `system` (a chat's system turns joined there, its other turns
merged so that the roles alternate, as the API requires); `max_tokens` is required; temperature is
0..1; there is no seed. JSON output uses `output_config.format` with a JSON schema (none for a
free-text chat). The reply's content blocks hold the text; `stop_reason` gives the outcome:
end_turn / stop_sequence -> ok, max_tokens -> truncated, refusal (the safety classifiers stopped
it) -> filtered. Usage counts cache reads and writes apart from `input_tokens`; they are added
back so "input" means every prompt token, as for the others.
Errors are `{"type": "error", "error": {"type", "message"}}`: overloaded_error is 529, a prompt too
long is a 400 invalid_request_error, request_too_large a 413.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oracle.config import ModelDeployment
from oracle.router.adapters.base import (
    TRANSIENT,
    Call,
    ProviderReply,
    alternating,
    answer_text,
    api_key,
    body_bytes,
    count,
    error_body,
    json_object,
    system_texts,
)

API_VERSION = "2023-06-01"
_STOP = {"end_turn": "ok", "stop_sequence": "ok", "max_tokens": "truncated", "refusal": "filtered"}


class AnthropicMessages:
    def request(self, d: ModelDeployment, call: Call) -> tuple[str, dict[str, str], bytes]:
        doc: dict[str, Any] = {"model": d.model, "max_tokens": min(call.max_tokens, d.max_output)}
        if call.messages:
            system = system_texts(call.messages)
            if system:
                doc["system"] = "\n\n".join(system)
            doc["messages"] = [{"role": role, "content": "\n\n".join(texts)}
                               for role, texts in alternating(call.messages)]
        else:
            doc["system"] = call.system
            doc["messages"] = [{"role": "user", "content": call.user}]
        doc["temperature"] = min(call.temperature, 100) / 100
        if "json_schema" in d.capabilities and call.schema:
            doc["output_config"] = {"format": {"type": "json_schema", "schema": call.schema}}
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION, **call.headers}
        if d.payer == "api_key":
            headers["x-api-key"] = api_key(d)
        return f"{d.base_url}/v1/messages", headers, body_bytes(doc)

    def parse(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderReply:
        doc = json_object(status, raw)
        if isinstance(doc, ProviderReply):
            return doc
        if status != 200 or doc.get("type") == "error" or "error" in doc:
            return error_body(status, raw, doc.get("error"), "type")
        usage = _usage(doc.get("usage"))
        stop = doc.get("stop_reason")
        content = doc.get("content")
        if not isinstance(content, list) or not isinstance(stop, str):
            return ProviderReply("malformed", raw=raw, http_status=status, usage=usage,
                                 error="no content list with a stop_reason")
        texts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        text: Any = "".join(t for t in texts if isinstance(t, str)) if all(isinstance(t, str) for t in texts) else None
        outcome = _STOP.get(stop, "error")
        if outcome == "filtered":
            return ProviderReply("filtered", raw=raw, http_status=status, usage=usage, error="stop_reason refusal")
        answer = answer_text(text, status, raw, usage)
        if isinstance(answer, ProviderReply):
            return answer
        return ProviderReply(outcome, TRANSIENT if outcome == "error" else "", text=answer, raw=raw,
                             http_status=status, usage=usage,
                             error="" if outcome != "error" else f"stop_reason {stop!r}")


def _usage(u: Any) -> dict[str, int]:
    if not isinstance(u, dict):
        return {}
    cache_read = count(u.get("cache_read_input_tokens"))
    return {"input": count(u.get("input_tokens")) + cache_read + count(u.get("cache_creation_input_tokens")),
            "output": count(u.get("output_tokens")), "cached": cache_read, "reasoning": 0}
