"""One OpenAPI 3.1 document per listener, its schemas derived from the records the handlers return."""

from __future__ import annotations

from typing import Any

from oracle import __version__
from oracle.api.ready import Check
from oracle.api.records import CatalogEntry, LiveChainStatus
from oracle.api.schemas import schema_of
from oracle.views import PaymentRecord, RequestDetail, RequestSummary

_ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
          "properties": {"error": {"type": "string"}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "a malformed query or body (the message says what is accepted)", 401: "no or a wrong bearer token",
            403: "a loopback listener asked by another host name", 404: "nothing on record matches",
            405: "the route takes another method (Allow names it)",
            409: "the action cannot be done now (the message says why)",
            503: "mutating routes are off: no token is configured"}
    return {str(c): _json({"$ref": "#/components/schemas/Error"}, text[c]) for c in codes}


def _page(item: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "next_cursor"], "additionalProperties": False,
            "properties": {"items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
                           "next_cursor": {"type": ["string", "null"]}}}


def _param(name: str, where: str, description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "description": description,
            "schema": {"type": "string"}}


def _document(title: str, description: str, paths: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    components["Error"] = _ERROR
    return {"openapi": "3.1.0", "info": {"title": title, "version": __version__, "description": description},
            "paths": paths, "components": {"schemas": components}}


def operator_document() -> dict[str, Any]:
    s: dict[str, Any] = {}
    for record in (RequestSummary, RequestDetail, PaymentRecord, LiveChainStatus, CatalogEntry, Check):
        schema_of(record, s)
    ref = {name: {"$ref": f"#/components/schemas/{name}"} for name in s}
    s["RequestPage"], s["PaymentPage"] = _page("RequestSummary"), _page("PaymentRecord")
    s["Ready"] = {"type": "object", "required": ["ready", "failed", "checks"], "additionalProperties": False,
                  "properties": {"ready": {"type": "boolean"}, "failed": {"type": "array", "items": {"type": "string"}},
                                 "checks": {"type": "array", "items": ref["Check"]}}}
    s["Intake"] = {"type": "object", "required": ["chain", "chain_id", "intake_paused"], "additionalProperties": False,
                   "properties": {"chain": {"type": "string"}, "chain_id": {"type": "integer"},
                                  "intake_paused": {"type": ["string", "null"]}}}
    chain_q = _param("chain", "query", "a chain's name or id")
    rid = [_param("chain_id", "path", "the chain's id (or name)"),
           _param("request_id", "path", "the request id, 64 hex digits, 0x optional, any case")]
    token: list[dict[str, list[str]]] = [{"bearer": []}]
    paths = {
        "/": {"get": {"summary": "The status page", "responses": {"200": {
            "description": "server-rendered HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/health": {"get": {"summary": "The process runs", "responses": {"200": _json(
            {"type": "object", "required": ["status", "uptime_seconds"], "additionalProperties": False,
             "properties": {"status": {"const": "ok"}, "uptime_seconds": {"type": "number"}}}, "running")}}},
        "/ready": {"get": {"summary": "Whether the daemon can work now, each check named", "responses": {
            "200": _json({"$ref": "#/components/schemas/Ready"}, "every check passed"),
            "503": _json({"$ref": "#/components/schemas/Ready"}, "a check failed: `failed` names it")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
            "description": "the Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/v1/status": {"get": {"summary": "Each chain's status", "responses": {"200": _json(
            {"type": "array", "items": ref["LiveChainStatus"]}, "one entry per chain"), **_errors(400)}}},
        "/v1/requests": {"get": {"summary": "Requests, newest first", "parameters": [
            chain_q, _param("state", "query", "states or groups (pending, failed), comma-separated"),
            _param("since", "query", "seen since: 30m, 2h, 1d, an ISO time, or unix seconds"),
            _param("limit", "query", "1 to 1000 (50)"), _param("cursor", "query", "a page's next_cursor")],
            "responses": {"200": _json({"$ref": "#/components/schemas/RequestPage"}, "a page"), **_errors(400, 404)}}},
        "/v1/requests/{chain_id}/{request_id}": {"get": {
            "summary": "One request: states with times, attempts, payments, transactions, receipt",
            "parameters": rid, "responses": {"200": _json(ref["RequestDetail"], "the request"),
                                             **_errors(400, 404)}}},
        "/v1/payments": {"get": {"summary": "The x402 ledger, newest first", "parameters": [
            _param("state", "query", "payment states or `unresolved`, comma-separated"),
            _param("limit", "query", "1 to 1000 (50)"), _param("cursor", "query", "a page's next_cursor")],
            "responses": {"200": _json({"$ref": "#/components/schemas/PaymentPage"}, "a page"), **_errors(400)}}},
        "/v1/catalog": {"get": {"summary": "Deployments with prices, capabilities and health", "responses": {
            "200": _json({"type": "array", "items": ref["CatalogEntry"]}, "the catalog")}}},
        "/v1/chains/{chain}/pause": {"post": {
            "summary": "Pause a chain's intake (requests are still recorded; in-flight ones finish)",
            "security": token, "parameters": [_param("chain", "path", "the chain's name or id")],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 200}}}}}},
            "responses": {"200": _json({"$ref": "#/components/schemas/Intake"}, "paused"),
                          **_errors(400, 401, 404, 405, 503)}}},
        "/v1/chains/{chain}/resume": {"post": {
            "summary": "Resume a chain's intake", "security": token,
            "parameters": [_param("chain", "path", "the chain's name or id")],
            "responses": {"200": _json({"$ref": "#/components/schemas/Intake"}, "resumed"),
                          **_errors(400, 401, 404, 405, 503)}}},
        "/v1/requests/{chain_id}/{request_id}/retry": {"post": {
            "summary": "Send an unprofitable request's signed response again while its deadline allows (its fee "
                       "is checked against the gas again)", "security": token, "parameters": rid,
            "responses": {"200": _json({"type": "object", "required": ["key", "state", "note"],
                                        "additionalProperties": False,
                                        "properties": {"key": {"type": "string"}, "state": {"type": "string"},
                                                       "note": {"type": "string"}}},
                                       "queued to be sent"), **_errors(400, 401, 404, 405, 409, 503)}}},
        "/v1/reconcile": {"post": {
            "summary": "Run the x402 reconciler now", "security": token,
            "responses": {"200": _json({"type": "object", "additionalProperties": {"type": "integer"}},
                                       "the pass's report"), **_errors(400, 401, 405, 409, 503)}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _json({"type": "object"},
                                                                                         "OpenAPI 3.1")}}},
    }
    document = _document("oracle operator API", "The operator listener: loopback by default. Mutating routes need "
                         "`Authorization: Bearer <token>` with the token from the environment variable named by "
                         "api.token_env.", paths, s)
    document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return document


def public_document(gateway: bool = False) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/receipts/{hash}": {"get": {
            "summary": "A receipt: the canonical JSON whose keccak-256 is the receipt hash a fulfilment carries",
            "parameters": [_param("hash", "path", "the receipt hash, 64 hex digits, 0x optional")],
            "responses": {"200": _json({"type": "object"}, "the receipt, byte for byte as hashed"),
                          **_errors(400, 404)}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _json({"type": "object"},
                                                                                         "OpenAPI 3.1")}}},
    }
    schemas: dict[str, Any] = {}
    if gateway:
        paths.update(_gateway_paths())
        schemas.update(_GATEWAY_SCHEMAS)
    return _document("oracle public API", "The public listener: what anyone may read"
                     + ("; and for agents, calls paid per call over x402 v2 (PAYMENT-SIGNATURE header; an unpaid "
                        "call gets 402 with PAYMENT-REQUIRED)" if gateway else "") + ".", paths, schemas)


_PAID = {
    "402": _json({"$ref": "#/components/schemas/Error"}, "payment required or refused: the PAYMENT-REQUIRED "
                 "header holds the x402 v2 requirements; the error says why a payment sent was refused"),
    "409": _json({"$ref": "#/components/schemas/Error"}, "a payment identifier reused with another payment or body"),
    "429": _json({"$ref": "#/components/schemas/Error"}, "the payer's rate limit or daily cap (Retry-After)"),
    "502": _json({"$ref": "#/components/schemas/Failed"}, "no model answered; nothing is settled"),
    "503": _json({"$ref": "#/components/schemas/Error"}, "settlements are behind: try again (Retry-After)"),
}
_NUMBER = {"type": "integer"}
_TEXT = {"type": "string"}
_GATEWAY_SCHEMAS: dict[str, Any] = {
    "Failed": {"type": "object", "required": ["error", "reason"], "additionalProperties": False,
               "properties": {"error": _TEXT, "reason": _TEXT}},
    "ChatRequest": {"type": "object", "required": ["model", "messages"], "additionalProperties": False,
                    "properties": {
                        "model": {"type": "string", "description": "a model spec as on-chain: an exact id, a "
                                  "fallback list, cheapest / fastest / best, options such as ;max_price="},
                        "messages": {"type": "array", "items": {
                            "type": "object", "required": ["role", "content"],
                            "properties": {"role": {"enum": ["system", "user", "assistant"]}, "content": _TEXT}}},
                        "max_tokens": _NUMBER, "temperature": {"type": "number"}, "seed": _NUMBER,
                        "response_format": {"type": "object"}, "stream": {"const": False}, "n": {"const": 1}}},
    "ChatCompletion": {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
                       "properties": {
                           "id": _TEXT, "object": {"const": "chat.completion"}, "created": _NUMBER, "model": _TEXT,
                           "choices": {"type": "array"},
                           "usage": {"type": "object", "required": ["prompt_tokens", "completion_tokens",
                                                                    "total_tokens", "cost"],
                                     "properties": {"cost": {"type": "number", "description": "USD paid"}}},
                           "oracle": {"type": "object"}}},
    "AnalyzeRequest": {"type": "object", "required": ["chain_id", "model", "prompt", "result", "consumer"],
                       "additionalProperties": False,
                       "properties": {"chain_id": _NUMBER, "model": _TEXT, "prompt": _TEXT,
                                      "result": {"type": "object", "description": 'e.g. {"type": "uint", "min": 0, '
                                                 '"max": 100}'},
                                      "consumer": _TEXT, "max_tokens": _NUMBER, "temperature": _NUMBER,
                                      "seed": _NUMBER, "valid_for": _NUMBER}},
    "Analysis": {"type": "object", "required": ["result_id", "chain_id", "oracle", "consumer", "query_hash", "status",
                                                "reason_code", "value", "result", "model_used", "receipt_hash",
                                                "valid_until", "signer", "signature"],
                 "properties": {"value": {"description": "the typed value"},
                                "signature": {"type": "string", "description": "EIP-712 over OffchainResult"}}},
    "Models": {"type": "object", "required": ["object", "data", "payment"],
               "properties": {"data": {"type": "array", "items": {"type": "object"}}, "payment": {"type": "object"}}},
    "Account": {"type": "object", "required": ["address", "calls", "spent", "settled", "last_seen"],
                "properties": {"address": _TEXT, "calls": _NUMBER, "spent": _NUMBER, "settled": _NUMBER,
                               "last_seen": {"type": ["number", "null"]}}},
}


def _gateway_paths() -> dict[str, Any]:
    def ref(name: str, description: str) -> dict[str, Any]:
        return _json({"$ref": f"#/components/schemas/{name}"}, description)

    return {
        "/v1/models": {"get": {"summary": "What can be bought, at the gateway's prices (base units per million "
                                          "tokens, per call)", "responses": {"200": ref("Models", "the models")}}},
        "/v1/chat/completions": {"post": {
            "summary": "OpenAI-compatible chat completion, routed like on-chain requests, paid over x402",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ChatRequest"}}}},
            "responses": {"200": ref("ChatCompletion", "the answer; usage.cost is what was paid"), **_errors(400),
                          **_PAID}}},
        "/v1/analyze": {"post": {
            "summary": "A typed answer signed as an OffchainResult for one consumer contract, paid over x402",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/AnalyzeRequest"}}}},
            "responses": {"200": ref("Analysis", "the signed answer"), **_errors(400), **_PAID}}},
        "/v1/account/{address}": {"get": {
            "summary": "A payer's calls, spend and last call: send X-Oracle-Message (base64 of the signed "
                       "message) and X-Oracle-Signature (its EIP-191 signature by the address)",
            "parameters": [_param("address", "path", "the payer's address")],
            "responses": {"200": ref("Account", "the account"),
                          "401": _json({"$ref": "#/components/schemas/Error"},
                                       "no, a stale, a replayed or a wrong signed message"), **_errors(400)}}},
    }
