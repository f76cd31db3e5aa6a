"""Google Gemini: POST `{base_url}/v1beta/models/{model}:generateContent`.

The system prompt is `systemInstruction` (a chat's system turns, one part each; its other turns
are `contents` with roles user and model, consecutive ones of a role merged); `generationConfig`
carries maxOutputTokens, temperature (0..2), seed, and JSON output (`responseMimeType`
application/json with `responseJsonSchema`; none for a free-text chat). The
outcome comes from `candidates[0].finishReason` (STOP -> ok, MAX_TOKENS -> truncated, SAFETY and
the other block reasons -> filtered) or from `promptFeedback.blockReason` when no candidate came
back. Usage: promptTokenCount (cached included), candidatesTokenCount plus thoughtsTokenCount as
output. Errors are `{"error": {"code", "message", "status"}}`, a 429's wait in RetryInfo.retryDelay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

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

_ROLES = {"user": "user", "assistant": "model"}
_FINISH = {"STOP": "ok", "MAX_TOKENS": "truncated", "SAFETY": "filtered", "RECITATION": "filtered",
           "BLOCKLIST": "filtered", "PROHIBITED_CONTENT": "filtered", "SPII": "filtered",
           "IMAGE_SAFETY": "filtered", "LANGUAGE": "refused"}


class GeminiGenerateContent:
    def request(self, d: ModelDeployment, call: Call) -> tuple[str, dict[str, str], bytes]:
        config: dict[str, Any] = {"maxOutputTokens": min(call.max_tokens, d.max_output),
                                  "temperature": min(call.temperature, 200) / 100}
        if "seed" in d.capabilities:
            config["seed"] = call.seed
        if "json_schema" in d.capabilities and call.schema:
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = call.schema
        doc: dict[str, Any] = {}
        if call.messages:
            system = system_texts(call.messages)
            if system:
                doc["systemInstruction"] = {"parts": [{"text": text} for text in system]}
            doc["contents"] = [{"role": _ROLES[role], "parts": [{"text": text} for text in texts]}
                               for role, texts in alternating(call.messages)]
        else:
            doc["systemInstruction"] = {"parts": [{"text": call.system}]}
            doc["contents"] = [{"role": "user", "parts": [{"text": call.user}]}]
        doc["generationConfig"] = config
        headers = {"Content-Type": "application/json", **call.headers}
        if d.payer == "api_key":
            headers["x-goog-api-key"] = api_key(d)
        return f"{d.base_url}/v1beta/models/{quote(d.model, safe='')}:generateContent", headers, body_bytes(doc)

    def parse(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderReply:
        doc = json_object(status, raw)
        if isinstance(doc, ProviderReply):
            return doc
        if status != 200 or "error" in doc:
            err = doc.get("error")
            reply = error_body(status, raw, err, "status")
            reply.retry_after = _retry_delay(err.get("details")) if isinstance(err, dict) else None
            return reply
        usage = _usage(doc.get("usageMetadata"))
        candidates: Any = doc.get("candidates")
        feedback = doc.get("promptFeedback")
        if not candidates and isinstance(feedback, dict) and feedback.get("blockReason"):
            return ProviderReply("filtered", raw=raw, http_status=status, usage=usage,
                                 error=f"prompt blocked: {str(feedback['blockReason'])[:100]}")
        try:
            candidate = candidates[0]
            finish = candidate.get("finishReason", "STOP")
            parts = candidate.get("content", {}).get("parts", [])
            if not isinstance(finish, str) or not isinstance(parts, list):
                raise TypeError
        except (KeyError, IndexError, TypeError, AttributeError):
            return ProviderReply("malformed", raw=raw, http_status=status, usage=usage,
                                 error="no candidates[0] with a finishReason")
        outcome = _FINISH.get(finish, "error")
        if outcome != "ok" and outcome != "truncated":
            return ProviderReply(outcome, TRANSIENT if outcome == "error" else "", raw=raw, http_status=status,
                                 usage=usage, error=f"finishReason {finish[:100]}")
        # Thought summaries are parts marked "thought"; the answer is the rest.
        texts: list[Any] = [p.get("text") for p in parts if isinstance(p, dict) and not p.get("thought")]
        joined = "".join(texts) if texts and all(isinstance(t, str) for t in texts) else None
        answer = answer_text(joined, status, raw, usage)
        if isinstance(answer, ProviderReply):
            return answer
        return ProviderReply(outcome, text=answer, raw=raw, http_status=status, usage=usage)


def _usage(u: Any) -> dict[str, int]:
    if not isinstance(u, dict):
        return {}
    thoughts = count(u.get("thoughtsTokenCount"))
    return {"input": count(u.get("promptTokenCount")), "output": count(u.get("candidatesTokenCount")) + thoughts,
            "cached": count(u.get("cachedContentTokenCount")), "reasoning": thoughts}


def _retry_delay(details: Any) -> float | None:
    """RetryInfo's retryDelay ("13s", "0.5s") from a Google error's details."""
    if not isinstance(details, list):
        return None
    for d in details:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = d.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return max(0.0, float(delay[:-1]))
                except ValueError:
                    return None
    return None
