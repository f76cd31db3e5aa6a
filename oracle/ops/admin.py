"""`oracle admin`: show an oracle's settings, and change them one transaction at a time.

    await show_oracle(config, path, "base")
    await send_change(config, path, "base", pause(True), key_env=None, confirm=confirmation(False))

A change is a function of the oracle's current state and the sending address to one `OracleCall`
(so `set-fees` and `set-limits` keep what they are not told to change). It is sent from the key in
`--key-env` when one is named (the pending owner accepting ownership, a payee withdrawing), else from
the deploy table's owner key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import aiohttp
from eth_account import Account
from pydantic import ValidationError

from oracle.config import Config, ConfigError, FeeScheduleSettings, KeySource, LimitSettings
from oracle.ops.calls import OracleCall, output_fields
from oracle.ops.chain import connect
from oracle.ops.sender import Confirm, TransactionSender, coin
from oracle.ops.state import OracleState, payee_of, read_state, withdrawable
from oracle.protocol import PolicyClass

M = TypeVar("M", FeeScheduleSettings, LimitSettings)
Change = Callable[[OracleState, str], OracleCall]  # (the oracle's state, the sender's address) -> the call


def set_signer(signer: str, payee: str) -> Change:
    return lambda _state, _sender: OracleCall("setSigner", (signer, payee))


def remove_signer(signer: str) -> Change:
    return lambda _state, _sender: OracleCall("removeSigner", (signer,))


def set_fees(policy_class: PolicyClass, base_fee: int | None = None, per_callback_gas: int | None = None,
             per_output_token: int | None = None) -> Change:
    """One class's fees; a part not given keeps its value on-chain."""
    if base_fee is None and per_callback_gas is None and per_output_token is None:
        raise ConfigError("set-fees: give at least one of --base-fee, --per-callback-gas, --per-output-token")

    def change(state: OracleState, _sender: str) -> OracleCall:
        old = state.fees[policy_class]
        new = (old[0] if base_fee is None else base_fee, old[1] if per_callback_gas is None else per_callback_gas,
               old[2] if per_output_token is None else per_output_token)
        checked = _valid(FeeScheduleSettings, dict(zip(("base_fee", "per_callback_gas", "per_output_token"), new,
                                                       strict=True)))
        return OracleCall("setFeeSchedule", (int(policy_class), (checked.base_fee, checked.per_callback_gas,
                                                                 checked.per_output_token)))
    return change


def set_limits(given: Mapping[str, int]) -> Change:
    """The limits named in `given` (LimitSettings field names); the others keep their value on-chain."""
    if not given:
        raise ConfigError("set-limits: give at least one limit, e.g. --max-tokens 8192")

    def change(state: OracleState, _sender: str) -> OracleCall:
        merged = {**dict(zip(LimitSettings.model_fields, state.limits, strict=True)), **given}
        return OracleCall("setLimits", (_valid(LimitSettings, merged).limits(),))
    return change


def pause(paused: bool) -> Change:
    return lambda _state, _sender: OracleCall("setPaused", (paused,))


def transfer_ownership(new_owner: str) -> Change:
    return lambda _state, _sender: OracleCall("transferOwnership", (new_owner,))


def accept_ownership() -> Change:
    return lambda _state, _sender: OracleCall("acceptOwnership")


def withdraw(to: str | None = None) -> Change:
    """The sender's whole balance in the oracle (a payee's fees), to `to` or to the sender itself."""
    return lambda _state, sender: OracleCall("withdraw", (to or sender,))


def _valid(model: type[M], values: dict[str, int]) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())) \
            from None


def _sending_key(config: Config, chain_name: str, key_env: str | None) -> KeySource:
    if key_env is not None:
        return KeySource(key_env=key_env)
    chain = next(c for c in config.chains if c.name == chain_name)
    if chain.deploy is None:
        raise ConfigError(f"no key to send from: pass --key-env NAME (the environment variable holding the sending "
                          f"key), or give chains[{chain_name}] a [chains.deploy] table with the owner's key")
    return chain.deploy.owner


async def send_change(config: Config, config_path: Path, chain_name: str, change: Change, key_env: str | None,
                      confirm: Confirm, say: Callable[[str], None] = print) -> None:
    _, chain = config.chain_named(chain_name)
    key = _sending_key(config, chain_name, key_env).load()
    async with aiohttp.ClientSession() as session:
        rpc = await connect(session, chain)
        state = await read_state(rpc, chain)
        sender = TransactionSender(rpc, chain, key, confirm, say)
        await sender.send(change(state, sender.address), state.address)


async def show_oracle(config: Config, config_path: Path, chain_name: str, signer: str | None = None,
                      say: Callable[[str], None] = print) -> None:
    """Print the oracle's owner, pending owner, pause, limits, fees per class, the signer's registration
    and payee, and the balances that matter to an operator."""
    _, chain = config.chain_named(chain_name)
    signer_note = ""
    if signer is None:
        try:
            signer = str(Account.from_key(config.signer.load()).address)
        except ConfigError as exc:
            signer_note = f"unknown ({exc}; or pass --signer ADDRESS)"
    price = chain.native_price_micro_usd
    async with aiohttp.ClientSession() as session:
        rpc = await connect(session, chain)
        state = await read_state(rpc, chain)
        limits = " ".join(f"{n}={v}" for n, v in zip(output_fields("limits"), state.limits, strict=True))
        say(f"oracle          {state.address} on {chain.name} (chain {chain.chain_id})")
        say(f"owner           {state.owner}")
        say(f"pending owner   {state.pending_owner or 'none'}")
        say(f"paused          {'yes' if state.paused else 'no'}")
        say(f"limits          {limits}")
        fee_names = output_fields("feeSchedule")
        for i, cls in enumerate(PolicyClass):
            parts = " ".join(f"{n}={v}" for n, v in zip(fee_names, state.fees[cls], strict=True))
            say(f"{'fees (wei)' if i == 0 else '':<16}{cls.name.lower():<9} {parts}")
        if signer is None:
            say(f"signer          {signer_note}")
            return
        say(f"signer balance  {coin(await rpc.balance(signer), price)}")
        payee = await payee_of(rpc, state.address, signer)
        if payee is None:
            say(f"signer          {signer}: not registered; register it with `oracle admin --config {config_path} "
                f"--chain {chain.name} set-signer {signer} PAYEE`")
            return
        say(f"signer          {signer}: registered, payee {payee}")
        say(f"payee balance   {coin(await withdrawable(rpc, state.address, payee), price)} to withdraw from the "
            f"oracle, {coin(await rpc.balance(payee), price)} in its account")
