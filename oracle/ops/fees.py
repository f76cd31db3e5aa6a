"""The fee schedule `oracle deploy` sets for a policy class the config gives no fees for.

A request's quote is `k * (baseFee + perOutputToken * maxTokens) + perCallbackGas * callbackGasLimit`.
The defaults make every quote pay, at the chain's gas cap (`gas.max_fee_per_gas`), for

- the gas of a response carrying a result of `maxResultBytes` with no callback (`baseFee`), by the
  transaction manager's own bound (`oracle.chain.gas.response_gas_bound`);
- the callback's gas, with the 1/64 that EIP-150 keeps back (`perCallbackGas`);
- the dearest deployment of the catalog: its prompt part (a prompt of `maxPromptBytes`, estimated as
  the router does, within its context window) and per-call price in `baseFee`, its answer tokens in
  `perOutputToken`. Every class may end at any deployment (an exact list names any, the policies fall
  back to dearer ones when the first fails), so each class gets the same figures, and the quote covers
  every deployment at every maxTokens up to the limit. Prices are micro-USD, turned into wei at the
  chain's `native_price_micro_usd`, rounded up.

Each part is at least 1 wei: a default schedule is never zero.
"""

from __future__ import annotations

from collections.abc import Sequence

from oracle.chain.gas import response_gas_bound
from oracle.config import ChainSettings, ConfigError, DeploySettings, ModelDeployment
from oracle.ops.state import Schedule
from oracle.protocol import Commitment, ResultSpec, ResultType
from oracle.results import json_schema
from oracle.router.catalog import Catalog
from oracle.router.decision import estimate_prompt_tokens
from oracle.router.prompts import sent_bytes

_ANY_WORD = b"\xff" * 32  # the dearest calldata: no zero bytes
_ANY_ADDRESS = "0x" + "ff" * 20
WEI = 10**18
MICRO = 10**6
# The daemon turns a fee into micro-USD rounding down and the gas rounding up, and the catalog rounds a
# call's estimate up once: a few micro-USD more keep the dearest deployment affordable after all of it.
ROUNDING_MICRO_USD = 4


def _wei(micro_usd: int, per: int, native_price_micro_usd: int) -> int:
    """`micro_usd / per` micro-USD in wei, rounded up."""
    return -(-micro_usd * WEI // (per * native_price_micro_usd))


def largest_response_gas(chain: ChainSettings, deploy: DeploySettings, callback_gas: int = 0) -> int:
    """The gas of a response carrying a result of `max_result_bytes` and `callback_gas` for the callback."""
    commitment = Commitment(_ANY_ADDRESS, _ANY_ADDRESS, callback_gas, 2**64 - 1, deploy.max_result_bytes, 2**96 - 1,
                            _ANY_WORD)
    return response_gas_bound(_ANY_WORD, commitment, chain.gas.fulfill_gas_overhead)


def largest_prompt_tokens(deploy: DeploySettings) -> int:
    """The router's estimate for a plain prompt of `max_prompt_bytes` as it is sent (with the system prompt
    and the answer schema of a text result)."""
    spec = ResultSpec(ResultType.TEXT, max_bytes=deploy.max_result_bytes)
    return estimate_prompt_tokens(sent_bytes("x" * deploy.max_prompt_bytes, spec, json_schema(spec)))


def default_schedule(chain: ChainSettings, deploy: DeploySettings, models: Sequence[ModelDeployment]) -> Schedule:
    cap, price = chain.gas.max_fee_per_gas, chain.native_price_micro_usd
    prompt_tokens = largest_prompt_tokens(deploy)
    entries = Catalog(models).entries
    # Micro-USD: the prompt and the per-call price (by the catalog's own estimate), and one answer token's
    # price per million tokens.
    fixed = max(e.estimate(min(prompt_tokens, e.context_window), 0) for e in entries) + ROUNDING_MICRO_USD
    per_token = max(e.output_price for e in entries)
    base_fee = largest_response_gas(chain, deploy) * cap + _wei(fixed, 1, price)
    schedule = (max(base_fee, 1), max(-(-cap * 64 // 63), 1), max(_wei(per_token, MICRO, price), 1))
    for what, value, bits in zip(("baseFee", "perCallbackGas", "perOutputToken"), schedule, (96, 64, 96),
                                 strict=True):
        if value >= 2**bits:
            raise ConfigError(f"chains[{chain.name}].deploy: the default {what} ({value} wei) does not fit the "
                              f"contract's uint{bits}: lower gas.max_fee_per_gas, or give each class's fees in "
                              "[chains.deploy.fees.<class>]")
    return schedule
