"""Compiled contracts shipped with the package (written by `make abi`; do not edit by hand)."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any


@cache
def artifact(name: str) -> dict[str, Any]:
    """`{"abi", "bytecode", "deployedBytecode"}` of a shipped contract, e.g. `artifact("AIOracle")`."""
    try:
        text = files(__name__).joinpath(f"{name}.json").read_text()
    except FileNotFoundError:
        raise KeyError(f"no shipped artifact named {name!r}; run `make abi`") from None
    data: dict[str, Any] = json.loads(text)
    return data


def abi(name: str) -> list[dict[str, Any]]:
    return list(artifact(name)["abi"])


def _canonical_type(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if not kind.startswith("tuple"):
        return kind
    return "(" + ",".join(_canonical_type(c) for c in param["components"]) + ")" + kind[len("tuple"):]


def signature(contract: str, name: str) -> str:
    """Canonical signature of a function, event or error, e.g. "fulfill((bytes32,...),...,bytes)"."""
    for item in abi(contract):
        if item.get("name") == name:
            return f"{name}({','.join(_canonical_type(p) for p in item['inputs'])})"
    raise KeyError(f"{contract} has no function, event or error named {name!r}")


def input_types(contract: str, name: str) -> list[str]:
    """The canonical ABI types of an item's inputs, for encoding with eth_abi."""
    for item in abi(contract):
        if item.get("name") == name:
            return [_canonical_type(p) for p in item["inputs"]]
    raise KeyError(f"{contract} has no function, event or error named {name!r}")


def output_types(contract: str, name: str) -> list[str]:
    """The canonical ABI types a function returns, for decoding with eth_abi."""
    for item in abi(contract):
        if item.get("name") == name and item.get("type") == "function":
            return [_canonical_type(p) for p in item["outputs"]]
    raise KeyError(f"{contract} has no function named {name!r}")


def constructor_types(contract: str) -> list[str]:
    """The canonical ABI types of a contract's constructor arguments, appended to its bytecode."""
    for item in abi(contract):
        if item.get("type") == "constructor":
            return [_canonical_type(p) for p in item["inputs"]]
    return []
