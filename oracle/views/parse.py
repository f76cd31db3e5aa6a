"""Reading what an operator types (or an HTTP query carries): states, times, limits, ids. Each refusal
says what is accepted."""

from __future__ import annotations

import datetime
import re
import time

from oracle.store.states import PaymentState, RequestState
from oracle.views.errors import BadQuery

MAX_LIMIT = 1_000

# Names for groups of states, so an operator need not list them.
REQUEST_GROUPS: dict[str, tuple[RequestState, ...]] = {
    "pending": (RequestState.SEEN, RequestState.CONFIRMED, RequestState.ACCEPTED, RequestState.REFUSED,
                RequestState.ANSWERED, RequestState.SIGNED, RequestState.SUBMITTED),
    "failed": (RequestState.EXPIRED, RequestState.UNPROFITABLE),
}
PAYMENT_GROUPS: dict[str, tuple[PaymentState, ...]] = {
    "unresolved": (PaymentState.RESERVED, PaymentState.SIGNED, PaymentState.SENT, PaymentState.UNKNOWN),
}
_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def parse_states(text: str | None, kind: str = "request") -> tuple[str, ...]:
    """`fulfilled`, `seen,confirmed` or a group (`pending`, `failed`; `unresolved` for payments), any case."""
    if not text:
        return ()
    names, groups = ((RequestState, REQUEST_GROUPS) if kind == "request" else (PaymentState, PAYMENT_GROUPS))
    out: list[str] = []
    for part in (p.strip().lower() for p in text.split(",")):
        if part in groups:
            out += [str(s) for s in groups[part]]
        elif part in names._value2member_map_:
            out.append(part)
        else:
            known = ", ".join([*(s.value for s in names), *groups])
            raise BadQuery(f"unknown {kind} state {part!r}: use one of {known} (several with commas)")
    return tuple(dict.fromkeys(out))


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """A time as unix seconds: `30m`, `2h`, `1d` ago; an ISO date or date-time (UTC unless it says);
    or unix seconds."""
    if not text:
        return None
    now = time.time() if now is None else now
    value = text.strip()
    if m := re.fullmatch(r"(\d+)\s*([smhdw])", value.lower()):
        return now - int(m.group(1)) * _UNITS[m.group(2)]
    if re.fullmatch(r"\d{9,11}(\.\d+)?", value):
        return float(value)
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"not a time: {text!r}: give a span ago (30m, 2h, 1d), an ISO date or date-time "
                       f"(2026-12-01, 2026-12-01T09:30, UTC unless it says), or unix seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def parse_limit(value: int | str | None, default: int = 50) -> int:
    if value is None or value == "":
        return default
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {value!r}")
    return limit


def parse_request_id(text: str) -> bytes:
    """32 bytes as 64 hex digits, with or without 0x, any case."""
    digits = text.strip().lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]{64}", digits):
        raise BadQuery(f"not a request id: {text!r}: give 64 hex digits (0x optional), or a request key "
                       f"chain_id:oracle:request_id")
    return bytes.fromhex(digits)
