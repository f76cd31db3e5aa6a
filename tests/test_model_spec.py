"""The Python model-spec parser accepts and refuses exactly what the contract does, at the same byte."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.exceptions import ContractCustomError

from oracle.chain.errors import decode_revert
from oracle.devnet import LocalStack
from oracle.protocol import InvalidModelSpec, PolicyClass, parse_model_spec


@pytest.mark.parametrize(
    ("spec", "policy", "models", "k", "options"),
    [
        ("gpt-4o-2024-08-06", PolicyClass.EXACT, ("gpt-4o-2024-08-06",), 1, {}),
        ("a/b:free,c@d", PolicyClass.EXACT, ("a/b:free", "c@d"), 1, {}),
        ("cheapest;max_price=20000", PolicyClass.CHEAPEST, (), 1, {"max_price": "20000"}),
        ("fastest;needs=json_schema+seed", PolicyClass.FASTEST, (), 1, {"needs": "json_schema+seed"}),
        ("best", PolicyClass.BEST, (), 1, {}),
        ("ensemble:3", PolicyClass.ENSEMBLE, (), 3, {}),
    ],
)
def test_valid_specs(spec: str, policy: PolicyClass, models: tuple[str, ...], k: int,
                     options: dict[str, str]) -> None:
    parsed = parse_model_spec(spec)
    assert (parsed.policy, parsed.models, parsed.ensemble_size, parsed.options) == (policy, models, k, options)


@pytest.mark.parametrize(
    ("spec", "offset"),
    [("", 0), ("a,,b", 2), ("a b", 1), ("ensemble:1", 9), ("cheapest;", 9), ("cheapest;max_price=", 19),
     ("a,b,c,d,e,f,g,h,i", 15), ("gpt\u00e9", 3), ("x;Key=1", 2)],
)
def test_malformed_specs_name_the_byte(spec: str, offset: int) -> None:
    with pytest.raises(InvalidModelSpec) as err:
        parse_model_spec(spec)
    assert err.value.offset == offset


def _chain_verdict(stack: LocalStack, spec: bytes) -> tuple[str, int | None]:
    oracle = stack.contract("AIOracle")
    try:
        # quote() parses the spec and reverts with InvalidModelSpec(offset) where the grammar breaks.
        oracle.functions.quote(spec.decode(), 1, 0).call()
        return ("ok", None)
    except ContractCustomError as exc:
        reason = decode_revert(bytes.fromhex(str(exc.data)[2:]))
        return (reason.name, reason.args.get("offset"))


_ALPHABET = st.sampled_from([*"abcz09AZ.,;=_-+/:@ \u00e9", "cheapest", "ensemble:", "best", "fastest",
                             "max_price=", "needs="])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_ALPHABET, max_size=12))
def test_python_and_contract_agree(stack: LocalStack, parts: list[str]) -> None:
    spec = "".join(parts).encode()
    if len(spec) > 256:
        return
    python: tuple[str, int | None]
    try:
        parse_model_spec(spec)
        python = ("ok", None)
    except InvalidModelSpec as exc:
        python = ("InvalidModelSpec", exc.offset)
    # eth_abi encodes the string as UTF-8; send the same bytes the parser saw.
    assert _chain_verdict(stack, spec) == python, spec
