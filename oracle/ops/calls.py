"""`AIOracle`'s functions as calldata, as text an operator reads, and its views decoded.

Built on the shipped ABI (`oracle.abi`), so a function's arguments are shown by the names the
contract gives them: `setFeeSchedule(policyClass=1 (cheapest), schedule=(baseFee=..., ...))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak

from oracle.abi import abi, artifact, constructor_types, input_types, output_types, signature
from oracle.chain.rpc import ChainClient
from oracle.protocol import PolicyClass

ORACLE = "AIOracle"


def _item(name: str | None) -> dict[str, Any]:
    """The ABI entry of a function (`None`: the constructor)."""
    for item in abi(ORACLE):
        if (item["type"] == "constructor") if name is None else (item.get("name") == name
                                                                   and item["type"] == "function"):
            return item
    raise KeyError(f"{ORACLE} has no function {name!r}")


def _show(param: dict[str, Any], value: Any) -> str:
    if param["type"] == "tuple":
        return "(" + ", ".join(f"{c['name']}={_show(c, v)}"
                               for c, v in zip(param["components"], value, strict=True)) + ")"
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if param["name"] == "policyClass":
        return f"{value} ({PolicyClass(value).name.lower()})"
    return str(value)


@dataclass(frozen=True)
class OracleCall:
    """One call of an `AIOracle` function (`function=None`: deploying one, with the constructor's arguments)."""

    function: str | None
    args: tuple[Any, ...] = ()

    @property
    def data(self) -> bytes:
        if self.function is None:
            creation = bytes.fromhex(artifact(ORACLE)["bytecode"].removeprefix("0x"))
            return creation + encode(constructor_types(ORACLE), self.args)
        selector = keccak(text=signature(ORACLE, self.function))[:4]
        return selector + encode(input_types(ORACLE, self.function), self.args)

    def __str__(self) -> str:
        inputs = _item(self.function)["inputs"]
        shown = ", ".join(f"{p['name']}={_show(p, v)}" for p, v in zip(inputs, self.args, strict=True))
        return f"deploy {ORACLE}({shown})" if self.function is None else f"{self.function}({shown})"


def output_fields(function: str) -> list[str]:
    """The field names of the struct a view returns, e.g. `limits` -> ["maxCallbackGas", ...]."""
    return [c["name"] for c in _item(function)["outputs"][0]["components"]]


async def view(rpc: ChainClient, oracle: str, function: str, *args: Any) -> tuple[Any, ...]:
    """A view function's outputs, decoded (a revert raises RpcError; a malformed answer, eth_abi's error)."""
    raw = await rpc.eth_call(oracle, OracleCall(function, args).data)
    return tuple(decode(output_types(ORACLE, function), raw))
