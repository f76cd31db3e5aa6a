"""What the deploy and admin tests share: a config file as an operator writes one (comments included),
the `oracle` command run in this process, and reads of the oracle on the chain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from oracle.abi import artifact
from oracle.cli import main
from oracle.devnet.anvil import Anvil
from oracle.devnet.harness import DEV_MODEL, SIGNER_ENV
from oracle.devnet.keys import DevKey, DevKeys

OWNER_ENV = "ORACLE_OWNER_KEY"
KEYS = DevKeys()
CAP = 100 * 10**9  # the chains' gas cap in these configs, wei/gas


def config_text(anvil: Anvil, tmp: Path, *, model_url: str = "http://127.0.0.1:9/v1", oracle: str | None = None,
                deploy: str = "", deploy_table: bool = True, chain_name: str = "testnet") -> str:
    """A config as an operator keeps one: comments on lines of their own and after values, a deploy table."""
    oracle_line = f'oracle = "{oracle}"   # the deployed oracle\n' if oracle else ""
    table = (f'[chains.deploy]\nowner = {{ key_env = "{OWNER_ENV}" }}   # never on the command line\n'
             f'payee = "{KEYS.facilitator.address}"\n{deploy}' if deploy_table else "")
    return f"""# The oracle daemon's configuration for the test chain.
# Comments and layout must survive `oracle deploy`.

[store]
path = "{tmp / 'oracle.sqlite'}"   # one SQLite file

[signer]
key_env = "{SIGNER_ENV}"   # the fulfillment signer

[[chains]]
name = "{chain_name}"        # what --chain names
chain_id = {anvil.chain_id}
rpc_url = "{anvil.rpc_url}"
ws_url = "{anvil.ws_url}"
{oracle_line}sweep_interval = 0.5
native_price_micro_usd = 3000000000   # 1 coin = 3,000 USD

[chains.gas]
max_fee_per_gas = {CAP}   # the gas cap the default fees are figured at
daily_budget = 100000000000000000000
replace_after = 10.0

{table}
# The catalog: one local model.
[[models]]
id = "local"
provider = "local"
api = "openai"
base_url = "{model_url}"
model = "{DEV_MODEL}"
payer = "none"
input_price = 150000
output_price = 600000
context_window = 4096
max_output = 1024
capabilities = ["json_schema", "seed"]
timeout = 10.0

[pipeline]
deadline_margin = 5.0
"""


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def oracle_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Outcome:
    """`oracle ARGS...` in this process: its exit code and what it printed."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def web3_of(anvil: Anvil) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 30}))


def oracle_at(w3: Web3, address: str) -> Contract:
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact("AIOracle")["abi"])


def oracle_address(config: Path) -> str:
    from oracle.config import load_config

    address = load_config(config).chains[0].oracle_address
    assert address is not None, config.read_text()
    return address


def deploy_contract(w3: Web3, name: str, *args: Any, sender: DevKey = KEYS.bots) -> ChecksumAddress:
    """A contract of the shipped artifacts, deployed from an unlocked dev account (a user's contract)."""
    art = artifact(name)
    tx_hash = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"]).constructor(*args).transact(
        {"from": sender.address})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    address = receipt["contractAddress"]
    assert receipt["status"] == 1 and address is not None
    return Web3.to_checksum_address(address)


def sent_by(w3: Web3, account: str) -> int:
    """Transactions `account` has had mined."""
    return w3.eth.get_transaction_count(Web3.to_checksum_address(account), "latest")
