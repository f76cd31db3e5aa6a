"""Pages and their opaque cursors. A cursor names the last row of a page (and what it pages), so the next
page starts after it however many rows arrive meanwhile; clients pass it back unread."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from oracle.views.errors import BadQuery

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # None on the last page


def encode_cursor(kind: str, position: list[Any]) -> str:
    raw = json.dumps([kind, *position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, types: tuple[type, ...]) -> list[Any]:
    """The position a cursor of `kind` holds, each value of the type given; BadQuery for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        value = None
    if (not isinstance(value, list) or len(value) != len(types) + 1 or value[0] != kind
            or not all(isinstance(v, t) and not isinstance(v, bool) for v, t in zip(value[1:], types, strict=True))):
        raise BadQuery(f"not a cursor of this list: {cursor[:40]!r} (pass back the next_cursor a page gave, "
                       f"or leave it out for the first page)")
    return value[1:]
