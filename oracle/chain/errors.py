"""Naming the custom error in revert data, so a refusal reads as "FeeBelowQuote(sent=1, quote=2)"."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi import decode
from eth_utils import keccak

from oracle.abi import abi

# Why `fulfillBatch` skipped a response whose request is not (or no longer) the one it answers.
UNKNOWN_REQUEST = keccak(text="UnknownRequest(bytes32)")[:4]
COMMITMENT_MISMATCH = keccak(text="CommitmentMismatch(bytes32)")[:4]

_CONTRACTS = ("AIOracle", "AIConsumer", "TypedResultsConsumer", "GovernanceSummarizer", "RiskSentinel")


@dataclass(frozen=True)
class RevertReason:
    name: str
    args: dict[str, Any]

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={'0x' + v.hex() if isinstance(v, bytes) else v}" for k, v in self.args.items())
        return f"{self.name}({inner})"


@cache
def _errors() -> dict[bytes, tuple[str, list[str], list[str]]]:
    found: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for contract in _CONTRACTS:
        for item in abi(contract):
            if item["type"] != "error":
                continue
            types = [p["type"] for p in item["inputs"]]
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            found[selector] = (item["name"], [p["name"] for p in item["inputs"]], types)
    return found


def decode_revert(data: bytes) -> RevertReason:
    """The custom error (or Error(string) / Panic(uint256)) that `data` encodes."""
    if len(data) < 4:
        return RevertReason("EmptyRevert", {})
    selector, body = data[:4], data[4:]
    if selector == keccak(text="Error(string)")[:4]:
        return RevertReason("Error", {"message": decode(["string"], body)[0]})
    if selector == keccak(text="Panic(uint256)")[:4]:
        return RevertReason("Panic", {"code": decode(["uint256"], body)[0]})
    known = _errors().get(selector)
    if known is None:
        return RevertReason("UnknownError", {"selector": selector, "data": body})
    name, names, types = known
    return RevertReason(name, dict(zip(names, decode(types, body), strict=True)))
