"""The gateway's request bodies, read strictly: every field checked, anything else refused (400) with
what to send instead. Bodies come from anyone; nothing in them is trusted or echoed at length."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_utils import is_address, to_checksum_address

from oracle.protocol import ResultSpec, ResultType
from oracle.results import ResultError, check_answerable
from oracle.views import BadQuery

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 64
MAX_PROMPT_BYTES = 32 * 1024
DEFAULT_MAX_TOKENS = 256
_CHAT_FIELDS = ("model", "messages", "max_tokens", "temperature", "seed", "response_format", "stream", "n")
_ANALYZE_FIELDS = ("chain_id", "model", "prompt", "result", "consumer", "max_tokens", "temperature", "seed",
                   "valid_for")


@dataclass(frozen=True)
class ChatBody:
    model: str
    messages: tuple[tuple[str, str], ...]
    max_tokens: int
    temperature: int  # hundredths, as the router takes it
    seed: int
    schema: dict[str, Any] | None  # from response_format json_schema


@dataclass(frozen=True)
class AnalyzeBody:
    chain_id: int
    model: str
    prompt: str
    result: ResultSpec
    consumer: str
    max_tokens: int
    temperature: int
    seed: int
    valid_for: int  # seconds the signed answer stays valid (its validUntil - now)


def parse_json(raw: bytes, fields: tuple[str, ...], route: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise BadQuery(f"the body is not JSON: {route} takes a JSON object") from None
    if not isinstance(doc, dict):
        raise BadQuery(f"the body must be a JSON object with {', '.join(fields)}")
    unknown = sorted(set(doc) - set(fields))
    if unknown:
        raise BadQuery(f"unknown field {unknown[0][:40]!r}: {route} takes {', '.join(fields)}")
    return doc


def chat_body(raw: bytes, most_tokens: int) -> ChatBody:
    doc = parse_json(raw, _CHAT_FIELDS, "/v1/chat/completions")
    if doc.get("stream"):
        raise BadQuery("stream is not served: send stream false (or leave it out) for one JSON answer")
    if doc.get("n", 1) != 1:
        raise BadQuery("n must be 1: one answer per paid call")
    messages = doc.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise BadQuery(f"messages must be a list of 1 to {MAX_MESSAGES} {{role, content}} objects")
    turns = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) - {"role", "content", "name"}:
            raise BadQuery(f"messages[{i}] must be an object with role and content")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise BadQuery(f"messages[{i}].role must be one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise BadQuery(f"messages[{i}].content must be a string (text parts only)")
        turns.append((str(role), content))
    if not any(role == "user" for role, _ in turns):
        raise BadQuery("messages need at least one user message")
    if sum(len(c.encode()) for _, c in turns) > MAX_PROMPT_BYTES:
        raise BadQuery(f"the messages are over {MAX_PROMPT_BYTES:,} bytes together")
    temperature = doc.get("temperature", 0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise BadQuery("temperature must be a number from 0 to 2")
    return ChatBody(_model(doc), tuple(turns), _max_tokens(doc, most_tokens), round(temperature * 100),
                    _seed(doc), _schema(doc.get("response_format")))


def analyze_body(raw: bytes, most_tokens: int, longest_validity: int) -> AnalyzeBody:
    doc = parse_json(raw, _ANALYZE_FIELDS, "/v1/analyze")
    chain_id = doc.get("chain_id")
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
        raise BadQuery("chain_id must be the positive integer id of a chain this oracle serves")
    prompt = doc.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise BadQuery("prompt must be a non-empty string")
    if len(prompt.encode()) > MAX_PROMPT_BYTES:
        raise BadQuery(f"prompt is over {MAX_PROMPT_BYTES:,} bytes")
    try:
        spec = ResultSpec.from_json(doc.get("result"))
        check_answerable(spec)
    except (ValueError, ResultError) as exc:
        raise BadQuery(f"result: {exc}") from None
    if spec.kind in (ResultType.TEXT, ResultType.JSON, ResultType.ABI) and spec.max_bytes <= 0:
        raise BadQuery(f"result: a {spec.kind.name.lower()} result needs max_bytes above 0")
    consumer = doc.get("consumer")
    if not isinstance(consumer, str) or not is_address(consumer):
        raise BadQuery("consumer must be the 0x address of the contract that will accept the answer")
    temperature = doc.get("temperature", 0)
    if isinstance(temperature, bool) or not isinstance(temperature, int) or not 0 <= temperature < 2**16:
        raise BadQuery("temperature must be an integer as on-chain requests carry it (hundredths: 70 is 0.7)")
    valid_for = doc.get("valid_for", longest_validity)
    if isinstance(valid_for, bool) or not isinstance(valid_for, int) or not 10 <= valid_for <= longest_validity:
        raise BadQuery(f"valid_for must be an integer from 10 to {longest_validity} seconds: how long the signed "
                       f"answer stays valid (a consumer refuses one valid for longer than its own window)")
    return AnalyzeBody(chain_id, _model(doc), prompt, spec, to_checksum_address(consumer),
                       _max_tokens(doc, most_tokens), temperature, _seed(doc), valid_for)


def _model(doc: dict[str, Any]) -> str:
    model = doc.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 256:
        raise BadQuery("model must be a model spec as on-chain requests give it: an exact model id, a "
                       "comma-separated fallback list, or cheapest / fastest / best (options such as ;max_price=)")
    return model


def _max_tokens(doc: dict[str, Any], most: int) -> int:
    value = doc.get("max_tokens", DEFAULT_MAX_TOKENS)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise BadQuery(f"max_tokens must be an integer from 1 to {most}")
    return value


def _seed(doc: dict[str, Any]) -> int:
    value = doc.get("seed", 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise BadQuery("seed must be an integer from 0 to 2^64-1")
    return value


def _schema(response_format: Any) -> dict[str, Any] | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind != "json_schema":
        raise BadQuery('response_format must be {"type": "text"} or {"type": "json_schema", "json_schema": '
                       '{"name": ..., "schema": {...}}}')
    inner = response_format.get("json_schema")
    schema = inner.get("schema") if isinstance(inner, dict) else None
    if not isinstance(schema, dict):
        raise BadQuery("response_format.json_schema.schema must be a JSON schema object")
    if len(json.dumps(schema)) > 16 * 1024:
        raise BadQuery("response_format.json_schema.schema is over 16 KiB")
    return schema
