"""How amounts read on the page: exact (no rounding), so what an operator reads is what the store holds."""

from __future__ import annotations

from decimal import Decimal


def count(n: int) -> str:
    """A whole number with thousands separators: 1,234,567."""
    return f"{n:,}"


def coin(wei: int | str) -> str:
    """Wei as the chain's native coin (1e18 wei), every digit kept: 0.000123456789."""
    return _plain(Decimal(int(wei)).scaleb(-18))


def usd(micro_usd: int) -> str:
    """Micro-USD as dollars, every digit kept: $0.0025."""
    return "$" + _plain(Decimal(micro_usd).scaleb(-6))


def _plain(value: Decimal) -> str:
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
