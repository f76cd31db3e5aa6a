"""x402's payment-identifier extension (v2): an idempotency key carried with a payment.

A resource server declares it in its 402's `extensions`; a client that sees the declaration echoes it
with an `id` (16-128 characters of letters, digits, `-` and `_`) in its payment payload. The server
binds the id to that exact payload: the same id and payload sent again gets the stored answer (no
second settlement), the same id with another payload HTTP 409. The SDK's own module for it needs
`jsonschema` at import, which this package does not otherwise use, hence these few lines.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

PAYMENT_IDENTIFIER = "payment-identifier"
_ID = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_SCHEMA = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
           "properties": {"required": {"type": "boolean"},
                          "id": {"type": "string", "minLength": 16, "maxLength": 128}},
           "required": ["required"]}


def declaration(required: bool = False) -> dict[str, Any]:
    """The server's entry under `extensions[PAYMENT_IDENTIFIER]` in its 402."""
    return {"info": {"required": required}, "schema": _SCHEMA}


def declared(extensions: Any) -> bool:
    """Does a 402's `extensions` declare the payment-identifier extension?"""
    entry = extensions.get(PAYMENT_IDENTIFIER) if isinstance(extensions, dict) else None
    info = entry.get("info") if isinstance(entry, dict) else None
    return isinstance(info, dict) and isinstance(info.get("required"), bool)


def new_identifier() -> str:
    return f"pay_{uuid.uuid4().hex}"


def with_identifier(extensions: dict[str, Any], identifier: str) -> dict[str, Any]:
    """The payload's `extensions`: the server's declaration echoed, with our id in its info."""
    entry = extensions[PAYMENT_IDENTIFIER]
    return {PAYMENT_IDENTIFIER: {**entry, "info": {**entry["info"], "id": identifier}}}


def identifier_of(extensions: Any) -> str | None:
    """The id a payment payload's `extensions` carry, if a valid one."""
    entry = extensions.get(PAYMENT_IDENTIFIER) if isinstance(extensions, dict) else None
    info = entry.get("info") if isinstance(entry, dict) else None
    value = info.get("id") if isinstance(info, dict) else None
    return value if isinstance(value, str) and _ID.match(value) else None
