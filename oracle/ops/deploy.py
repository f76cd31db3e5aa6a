"""`oracle deploy`: an `AIOracle` on a chain, at the settings of the chain's `[chains.deploy]` table.

    await deploy_oracle(config, Path("config.toml"), "base", confirmation(assume_yes=True))

With no `oracle` address in the chain's table it deploys one from the shipped artifacts (owned by the
deploy table's owner key). The address a creation gets follows from the owner and the nonce, so it
is written into the config file before the transaction is broadcast: a run that fails or is killed
after that finds the address on the next run and never deploys a second oracle. An address with no
code that is the owner's next creation was never mined and is deployed again at the same nonce.
Then, and on every later run, it reads what the oracle is set to and
sends only what differs from the table: the limits, each policy class's fees, and the config's
signer with its payee. A run with nothing to change sends nothing and says "up to date".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp
import rlp  # type: ignore[import-untyped]
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from oracle.chain.fee_schedule import fee_shortfalls, schedule_shortfalls
from oracle.chain.rpc import ChainClient
from oracle.config import ChainSettings, Config, ConfigError, DeploySettings, KeySource
from oracle.ops import OpsError
from oracle.ops.calls import OracleCall
from oracle.ops.chain import connect
from oracle.ops.config_file import check_writable, write_address
from oracle.ops.fees import default_schedule, largest_response_gas
from oracle.ops.sender import RECEIPT_TIMEOUT, Confirm, TransactionSender
from oracle.ops.state import Schedule, has_code, payee_of, read_state, until_seen
from oracle.protocol import PolicyClass


def key_name(source: KeySource) -> str:
    """How an operator knows a key: the environment variable or keystore it is read from."""
    return source.describe()


def target_fees(config: Config, chain: ChainSettings, deploy: DeploySettings) -> dict[PolicyClass, Schedule]:
    """Each class's fees: the table's, or the default. ConfigError when a class could not pay for the
    daemon's smallest response at the gas cap (the daemon would refuse to serve it)."""
    default = default_schedule(chain, deploy, config.models)
    table = {PolicyClass[name.upper()]: given for name, given in deploy.fees.items()}
    fees: dict[PolicyClass, Schedule] = {}
    for cls in PolicyClass:
        given = table.get(cls)
        fees[cls] = default if given is None else (given.base_fee, given.per_callback_gas, given.per_output_token)
    short = schedule_shortfalls(fees, chain, chain.gas.max_fee_per_gas)
    if short:
        raise ConfigError(
            f"chains[{chain.name}].deploy.fees: too low to pay for the smallest response at the gas cap "
            f"({chain.gas.max_fee_per_gas} wei/gas), so the daemon would refuse this oracle: "
            + "; ".join(str(s) for s in short)
            + ". Raise those classes' base_fee (or per_output_token), or delete their table for the default")
    return fees


def _check_limits(chain: ChainSettings, deploy: DeploySettings) -> None:
    """A request at the limits must fit one fulfilment transaction, or the daemon could never answer it."""
    gas = largest_response_gas(chain, deploy, deploy.max_callback_gas)
    if gas > chain.gas.batch_gas_max:
        raise ConfigError(f"chains[{chain.name}].deploy: a response with max_callback_gas ({deploy.max_callback_gas}) "
                          f"and a result of max_result_bytes ({deploy.max_result_bytes}) needs {gas} gas, more than "
                          f"gas.batch_gas_max ({chain.gas.batch_gas_max}): lower them, or raise batch_gas_max")


async def deploy_oracle(config: Config, config_path: Path, chain_name: str, confirm: Confirm,
                        say: Callable[[str], None] = print) -> str:
    """Deploy or update the chain's oracle; its address."""
    index, chain = config.chain_named(chain_name)
    deploy = chain.deploy
    if deploy is None:
        raise ConfigError(f"chains[{index}] ({chain.name}) has no [chains.deploy] table: add one under that chain "
                          "(the owner's key, the signer's payee, limits, fees: see config.example.toml)")
    _check_limits(chain, deploy)
    fees = target_fees(config, chain, deploy)
    if chain.oracle_address is None:
        check_writable(config_path, index)
    owner_key = deploy.owner.load()
    owner = str(Account.from_key(owner_key).address)
    signer = str(Account.from_key(config.signer.load()).address)
    payee = deploy.payee or owner
    async with aiohttp.ClientSession() as session:
        rpc = await connect(session, chain)
        sender = TransactionSender(rpc, chain, owner_key, confirm, say)
        if chain.oracle_address is None:
            say(f"no oracle address for {chain.name} in {config_path}: deploying one")
            chain = await _deploy(sender, chain, deploy, config_path, index, say)
        elif not await has_code(rpc, chain.oracle):
            chain = await _unfinished(sender, chain, deploy, config_path, index, say)
        state = await read_state(rpc, chain)
        say(f"oracle {state.address} on {chain.name} (chain {chain.chain_id}), owner {state.owner}")
        changes = [OracleCall("setLimits", (deploy.limits(),))] if state.limits != deploy.limits() else []
        changes += [OracleCall("setFeeSchedule", (int(cls), fees[cls])) for cls in PolicyClass
                    if state.fees[cls] != fees[cls]]
        if await payee_of(rpc, state.address, signer) != payee:
            changes.append(OracleCall("setSigner", (signer, payee)))
        if not changes:
            say("up to date")
        elif state.owner != to_checksum_address(owner):
            raise OpsError(f"{len(changes)} setting(s) differ from the deploy table, but the oracle's owner is "
                           f"{state.owner}, not the key in {key_name(deploy.owner)} ({owner}): send them from the "
                           "owner (`oracle admin`), or put the owner's key there")
        for call in changes:
            await sender.send(call, state.address)
        if changes:
            await until_seen(lambda: _fees_pay(rpc, chain), "the fee schedule as sent")
        await _check_fees_pay(rpc, chain)
        say(f"fee schedule pays for the daemon's smallest response at the gas cap "
            f"({chain.gas.max_fee_per_gas} wei/gas): `oracle run` will accept this oracle")
        return state.address


def creation_address(deployer: str, nonce: int) -> str:
    """Where the contract created by `deployer`'s transaction at `nonce` lives (CREATE): known before it is sent."""
    return to_checksum_address(keccak(rlp.encode([bytes.fromhex(deployer[2:]), nonce]))[12:])


async def _deploy(sender: TransactionSender, chain: ChainSettings, deploy: DeploySettings, config_path: Path,
                  index: int, say: Callable[[str], None]) -> ChainSettings:
    def record(nonce: int) -> None:
        address = creation_address(sender.address, nonce)
        if write_address(config_path, index, address):
            say(f"  {address} (created by this transaction) written to {config_path} (chains[{index}] {chain.name})")

    receipt = await sender.send(OracleCall(None, (sender.address, deploy.limits())), None, on_signed=record)
    address = to_checksum_address(receipt["contractAddress"])
    # A public RPC may send the next read to a node a block behind the one that gave the receipt.
    await until_seen(lambda: has_code(sender.rpc, address), f"the code of {address}")
    return chain.model_copy(update={"oracle_address": address})


async def _unfinished(sender: TransactionSender, chain: ChainSettings, deploy: DeploySettings, config_path: Path,
                      index: int, say: Callable[[str], None]) -> ChainSettings:
    """The configured oracle has no code: a deployment written down but not (yet) mined, or a wrong address."""
    address = to_checksum_address(chain.oracle)
    mined = await sender.rpc.nonce(sender.address, "latest")
    if creation_address(sender.address, mined) != address:
        return chain  # a wrong address: reading the oracle's state names it
    if await sender.rpc.nonce(sender.address, "pending") > mined:
        say(f"the deployment of {address} is waiting to be mined: waiting for it")
        await until_seen(lambda: has_code(sender.rpc, address), f"the code of {address}", timeout=RECEIPT_TIMEOUT)
        return chain
    say(f"the deployment of {address} was never mined: sending it again (the same nonce creates the same address)")
    return await _deploy(sender, chain, deploy, config_path, index, say)


async def _fees_pay(rpc: ChainClient, chain: ChainSettings) -> bool:
    return not await fee_shortfalls(rpc, chain, chain.gas.max_fee_per_gas)


async def _check_fees_pay(rpc: ChainClient, chain: ChainSettings) -> None:
    """The daemon's own start-up check, at the gas cap: what it will find when it starts."""
    short = await fee_shortfalls(rpc, chain, chain.gas.max_fee_per_gas)
    if short:
        raise OpsError(f"the fee schedule of {chain.oracle} cannot pay for the smallest response at the gas cap, "
                       "so `oracle run` would refuse it: " + "; ".join(str(s) for s in short)
                       + ". Did someone change it meanwhile? Run `oracle deploy` again")
