"""Compile the contracts with solc-js and write the artifacts the Python package ships.

    python contracts/export_abi.py [OUT_DIR]        (default: oracle/abi, what `make abi` does)

Writes one `<Contract>.json` per shipped contract ({"abi", "bytecode", "deployedBytecode"}) and
`protocol.json`: the EIP-712 domain and type strings with their hashes, the enums, struct layouts and
constants of `src/OracleTypes.sol`, read from the compiler's AST so Python never re-types them.

Compiler settings are pinned here (optimizer, EVM version, no metadata hash, no CBOR suffix), so a
clean clone reproduces the shipped bytes exactly; a test compiles into a temporary folder and diffs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from eth_utils import keccak

CONTRACTS = Path(__file__).resolve().parent
ROOT = CONTRACTS.parent
DEFAULT_OUT = ROOT / "oracle" / "abi"
SOLCJS = CONTRACTS / "node_modules" / "solc" / "solc.js"

# Contracts whose ABI (and bytecode, when deployable) the package ships.
SHIPPED = {
    "src/AIOracle.sol": ["AIOracle"],
    "src/AIConsumer.sol": ["AIConsumer"],
    "src/interfaces/IAIOracle.sol": ["IAIOracle"],
    "src/interfaces/IAIOracleConsumer.sol": ["IAIOracleConsumer"],
    "src/examples/TypedResultsConsumer.sol": ["TypedResultsConsumer"],
    "src/examples/GovernanceSummarizer.sol": ["GovernanceSummarizer"],
    "src/examples/RiskSentinel.sol": ["RiskSentinel"],
    "src/examples/ExampleVault.sol": ["ExampleVault"],
    "src/devnet/TestUSD.sol": ["TestUSD"],
    "src/devnet/DevVotes.sol": ["DevVotes"],
    "src/devnet/DevGovernor.sol": ["DevGovernor"],
}
TYPES_SOURCE = "src/OracleTypes.sol"

SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 10_000},
    "evmVersion": "prague",
    "metadata": {"bytecodeHash": "none", "appendCBOR": False},
    "outputSelection": {
        "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"], "": ["ast"]},
    },
}


def compile_sources() -> dict[str, Any]:
    """Run solc-js on every shipped source; return its standard-JSON output."""
    sources = {path: {"content": (CONTRACTS / path).read_text()} for path in [*SHIPPED, TYPES_SOURCE]}
    request = {"language": "Solidity", "sources": sources, "settings": SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        # solc-js truncates output written to a pipe past 64 KiB: go through files.
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(request))
        with src.open() as stdin, dst.open("w") as stdout:
            subprocess.run(
                ["node", str(SOLCJS), "--standard-json", "--base-path", str(CONTRACTS),
                 "--include-path", str(CONTRACTS / "node_modules")],
                stdin=stdin, stdout=stdout, cwd=CONTRACTS, check=True,
            )
        text = dst.read_text()
    # solc-js may print an SMT-solver notice line before the JSON.
    output: dict[str, Any] = json.loads(text[text.index("{"):])
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise SystemExit("compilation failed:\n" + "\n".join(errors))
    return output


def _nodes(node: Any, node_type: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("nodeType") == node_type:
            found.append(node)
        for value in node.values():
            found.extend(_nodes(value, node_type))
    elif isinstance(node, list):
        for value in node:
            found.extend(_nodes(value, node_type))
    return found


def _literal(node: dict[str, Any]) -> Any:
    """The value of a constant: a number or string literal, or keccak256 of a string literal."""
    if node["nodeType"] == "Literal":
        return int(node["value"].replace("_", ""), 0) if node["kind"] == "number" else node["value"]
    if node["nodeType"] == "FunctionCall" and node["expression"].get("name") == "keccak256":
        return {"keccak256": _literal(node["arguments"][0])}
    raise ValueError(f"unsupported constant expression: {node['nodeType']}")


def _abi_type(param: dict[str, Any]) -> str:
    if not param["type"].startswith("tuple"):
        return str(param["type"])
    inner = ",".join(_abi_type(c) for c in param["components"])
    return f"({inner}){param['type'][len('tuple'):]}"


def _struct_layouts(abi: list[dict[str, Any]]) -> dict[str, Any]:
    """Struct name -> ordered fields, collected from every tuple in the ABI."""
    structs: dict[str, Any] = {}

    def visit(param: dict[str, Any]) -> None:
        internal = param.get("internalType", "")
        if not internal.startswith("struct "):
            return
        name = internal.removeprefix("struct ").split(".")[-1].removesuffix("[]")
        structs[name] = {
            "fields": [{"name": c["name"], "type": _abi_type(c)} for c in param["components"]],
            "abi_type": _abi_type({**param, "type": "tuple"}),
        }
        for c in param["components"]:
            visit(c)

    for item in abi:
        for param in [*item.get("inputs", []), *item.get("outputs", [])]:
            visit(param)
    return dict(sorted(structs.items()))


def protocol_description(output: dict[str, Any]) -> dict[str, Any]:
    ast = output["sources"][TYPES_SOURCE]["ast"]
    enums = {
        e["name"]: {m["name"]: i for i, m in enumerate(e["members"])}
        for e in _nodes(ast, "EnumDefinition")
    }
    constants: dict[str, Any] = {}
    for var in _nodes(ast, "VariableDeclaration"):
        if var.get("constant") and var.get("value") is not None:
            constants[var["name"]] = _literal(var["value"])
    type_strings = [v["keccak256"] for k, v in constants.items() if k.endswith("_TYPEHASH")]
    oracle_abi = output["contracts"]["src/AIOracle.sol"]["AIOracle"]["abi"]
    return {
        "eip712": {"name": constants.pop("EIP712_NAME"), "version": constants.pop("EIP712_VERSION")},
        "types": {
            t.split("(")[0]: {"type": t, "typehash": "0x" + keccak(text=t).hex()}
            for t in sorted(type_strings)
        },
        "enums": enums,
        "constants": {k: v for k, v in sorted(constants.items()) if not k.endswith("_TYPEHASH")},
        "structs": _struct_layouts(oracle_abi),
    }


def export(out_dir: Path) -> list[Path]:
    output = compile_sources()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source, names in SHIPPED.items():
        for name in names:
            compiled = output["contracts"][source][name]
            artifact = {
                "contractName": name,
                "abi": compiled["abi"],
                "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            }
            path = out_dir / f"{name}.json"
            path.write_text(json.dumps(artifact, indent=1, sort_keys=True) + "\n")
            written.append(path)
    path = out_dir / "protocol.json"
    path.write_text(json.dumps(protocol_description(output), indent=2, sort_keys=True) + "\n")
    written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for p in export(target):
        print(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
