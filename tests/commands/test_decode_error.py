"""`oracle decode-error`: revert data named from the shipped ABIs, and what other input gets."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from oracle.abi.errors import decode_revert, error_table
from oracle.cli import main


def _data(signature: str, types: list[str], values: list[object]) -> str:
    return "0x" + (keccak(text=signature)[:4] + encode(types, values)).hex()


@pytest.mark.parametrize(("data", "printed"), [
    (_data("FeeBelowQuote(uint256,uint256)", ["uint256", "uint256"], [1, 2]), "FeeBelowQuote(sent=1, quote=2)"),
    (_data("UnknownRequest(bytes32)", ["bytes32"], [b"\x01" * 32]), "UnknownRequest(requestId=0x" + "01" * 32 + ")"),
    (_data("Error(string)", ["string"], ["no"]), "Error(message='no')"),
    (_data("Panic(uint256)", ["uint256"], [0x11]), "Panic(code=17: arithmetic overflow or underflow)"),
    (_data("OwnableUnauthorizedAccount(address)", ["address"], ["0x" + "ab" * 20]),
     "OwnableUnauthorizedAccount(account=0x" + "ab" * 20 + ")"),
])
def test_known_errors_are_named_with_their_arguments(data: str, printed: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode-error", data]) == 0
    assert capsys.readouterr().out.strip().lower() == printed.lower()


def test_every_error_of_the_oracle_and_its_examples_is_known() -> None:
    names = {d.name for d in error_table().values()}
    assert {"FeeBelowQuote", "OraclePaused", "InvalidAbiType", "OnlyOracle", "ResultAlreadyUsed",
            "NotConsumer", "DuplicateModelSpecOption"} <= names


@pytest.mark.parametrize(("data", "code", "message"), [
    ("0xzz", 2, "not hex revert data"),
    ("0xdeadbeef", 1, "selector 0xdeadbeef is not an error of the oracle"),
    ("0x12", 1, "is not an error of the oracle"),
])
def test_other_input_is_told_what_it_is(data: str, code: int, message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode-error", data]) == code
    assert message in capsys.readouterr().err


def test_truncated_arguments_are_said_not_guessed() -> None:
    assert str(decode_revert(keccak(text="FeeBelowQuote(uint256,uint256)")[:4] + b"\x00" * 10)) == (
        "FeeBelowQuote(<arguments do not decode: 10 bytes>)")
