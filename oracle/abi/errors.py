"""Revert data read back as `ErrorName(arg=value, ...)`, from every custom error in the shipped ABIs
(the oracle, the consumer base, the examples, the local tokens) plus Solidity's `Error(string)` and
`Panic(uint256)`. One table for the client, the command line and the admin commands."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from eth_abi import decode
from eth_utils import keccak, to_checksum_address

from oracle.abi import _canonical_type, abi

PANIC_CODES = {
    0x01: "assert failed", 0x11: "arithmetic overflow or underflow", 0x12: "division by zero",
    0x21: "invalid enum value", 0x22: "bad storage byte array", 0x31: "pop on an empty array",
    0x32: "array index out of bounds", 0x41: "out of memory", 0x51: "call to an invalid internal function",
}


@dataclass(frozen=True)
class ErrorDef:
    name: str
    inputs: tuple[tuple[str, str], ...]  # (name, canonical type)
    contracts: tuple[str, ...]  # the shipped contracts that declare it

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(t for _, t in self.inputs)})"


def _shipped() -> list[str]:
    return sorted(p.name[:-5] for p in files("oracle.abi").iterdir()
                  if p.name.endswith(".json") and p.name != "protocol.json")


@cache
def error_table() -> dict[bytes, ErrorDef]:
    table: dict[bytes, ErrorDef] = {
        keccak(text="Error(string)")[:4]: ErrorDef("Error", (("message", "string"),), ("solidity",)),
        keccak(text="Panic(uint256)")[:4]: ErrorDef("Panic", (("code", "uint256"),), ("solidity",)),
    }
    for contract in _shipped():
        for item in abi(contract):
            if item.get("type") != "error":
                continue
            inputs = tuple((str(p.get("name", "")), _canonical_type(p)) for p in item["inputs"])
            definition = ErrorDef(item["name"], inputs, (contract,))
            selector = keccak(text=definition.signature)[:4]
            known = table.get(selector)
            if known is not None:
                definition = ErrorDef(known.name, known.inputs, (*known.contracts, contract))
            table[selector] = definition
    return table


def _show(value: Any, kind: str) -> str:
    if kind == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_show(v, kind) for v in value) + ")"
    return repr(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class RevertReason:
    """A named error and its arguments; `str()` reads `FeeBelowQuote(sent=1, quote=2)`."""

    name: str
    args: tuple[tuple[str, str, Any], ...]  # (name, canonical type, value)
    undecodable: int = -1  # the length of arguments that do not decode as the error's, or -1

    def arg(self, name: str) -> Any:
        return next(v for n, _, v in self.args if n == name)

    def __str__(self) -> str:
        if self.undecodable >= 0:
            return f"{self.name}(<arguments do not decode: {self.undecodable} bytes>)"
        inner = ", ".join(f"{n}={_show(v, t)}" if n else _show(v, t) for n, t, v in self.args)
        if self.name == "Panic" and self.args and self.args[0][2] in PANIC_CODES:
            inner += f": {PANIC_CODES[self.args[0][2]]}"
        return f"{self.name}({inner})"


def decode_revert(data: bytes) -> RevertReason | None:
    """The error a shipped contract (or Solidity itself) reverts with in `data`; None if no shipped ABI
    declares its selector. Arguments too short for the error are said so, not guessed at."""
    definition = error_table().get(data[:4]) if len(data) >= 4 else None
    if definition is None:
        return None
    try:
        values = decode([t for _, t in definition.inputs], data[4:])
    except Exception:  # eth_abi raises several types; all mean "these bytes are not that error's arguments"
        return RevertReason(definition.name, (), undecodable=len(data) - 4)
    return RevertReason(definition.name, tuple((n, t, v) for (n, t), v in zip(definition.inputs, values,
                                                                             strict=True)))
