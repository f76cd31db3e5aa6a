"""The Python model-spec parser accepts and refuses exactly what the contract does, at the same byte."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.exceptions import ContractCustomError

from oracle.abi.errors import decode_revert
from oracle.devnet import LocalStack
from oracle.protocol import DuplicateModelSpecOption, InvalidModelSpec, PolicyClass, parse_model_spec


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


@pytest.mark.parametrize(
    ("spec", "offset"),
    [("cheapest;max_price=1;max_price=2", 21), ("best;needs=seed;max_price=5;needs=seed", 28),
     ("a,b;data=zdr;data=zdr", 13)],
)
def test_an_option_given_twice_is_refused_at_its_second_key(spec: str, offset: int) -> None:
    with pytest.raises(DuplicateModelSpecOption, match="given twice; give each option once") as err:
        parse_model_spec(spec)
    assert (err.value.error, err.value.offset) == ("DuplicateModelSpecOption", offset)


def test_options_with_distinct_keys_are_kept() -> None:
    assert parse_model_spec("cheapest;max_price=1;max_prices=2").options == {"max_price": "1", "max_prices": "2"}


def _chain_verdict(stack: LocalStack, spec: bytes) -> tuple[str, int | None]:
    oracle = stack.contract("AIOracle")
    try:
        # quote() parses the spec and reverts with InvalidModelSpec(offset) where the grammar breaks, or
        # DuplicateModelSpecOption(offset) where an option repeats a key.
        oracle.functions.quote(spec.decode(), 1, 0).call()
        return ("ok", None)
    except ContractCustomError as exc:
        reason = decode_revert(bytes.fromhex(str(exc.data)[2:]))
        assert reason is not None
        return (reason.name, reason.arg("offset"))


_ALPHABET = st.sampled_from([*"abcz09AZ.,;=_-+/:@ \u00e9", "cheapest", "ensemble:", "best", "fastest",
                             "max_price=", "needs=", ";max_price=1", ";needs=seed", ";data=zdr"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_ALPHABET, max_size=12))
def test_python_and_contract_agree(stack: LocalStack, parts: list[str]) -> None:
    _agree(stack, "".join(parts).encode())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(["cheapest", "gpt-4o,b", "ensemble:3", "a b"]),
       options=st.lists(st.sampled_from([";max_price=1", ";max_price=2", ";needs=seed", ";data=zdr", ";max_price=",
                                         ";max_prices=1", ";Key=1"]), max_size=5))
def test_python_and_contract_agree_on_repeated_options(stack: LocalStack, target: str, options: list[str]) -> None:
    _agree(stack, (target + "".join(options)).encode())


def _agree(stack: LocalStack, spec: bytes) -> None:
    if len(spec) > 256:
        return
    python: tuple[str, int | None]
    try:
        parse_model_spec(spec)
        python = ("ok", None)
    except InvalidModelSpec as exc:
        python = (exc.error, exc.offset)
    # eth_abi encodes the string as UTF-8; send the same bytes the parser saw.
    assert _chain_verdict(stack, spec) == python, spec
