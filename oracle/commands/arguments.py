"""Types for command-line values: a bad one is refused by argparse with a line saying what is expected
(exit 2), before any command runs, instead of failing later inside an encoder."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from eth_utils import is_address, to_checksum_address


def address(value: str) -> str:
    """A 20-byte address in any case, as its checksummed form."""
    if not is_address(value):
        raise argparse.ArgumentTypeError(f"not an address (0x and 40 hex digits): {value!r}")
    return str(to_checksum_address(value))


def amount(value: str) -> int:
    """A whole number that is not negative (wei, gas, a limit)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value!r}")
    return number


def unsigned(bits: int) -> Callable[[str], int]:
    """A whole number that fits the contract's uint`bits` field."""
    def parse(value: str) -> int:
        number = amount(value)
        if number >= 1 << bits:
            raise argparse.ArgumentTypeError(f"must be below 2**{bits} (the contract's uint{bits}): {value!r}")
        return number
    parse.__name__ = f"uint{bits}"  # argparse names the type in its message
    return parse


def seconds(value: str) -> float:
    """A positive duration in seconds."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be above 0 seconds: {value!r}")
    return number
