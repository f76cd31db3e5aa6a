"""`LocalStack`: anvil plus every contract deployed from the shipped artifacts, ready to use.

    with LocalStack() as stack:
        oracle = stack.contract("AIOracle")
        print(stack.addresses["AIOracle"], stack.keys.signer.address)

Deployment uses anvil's unlocked dev accounts; roles are in `oracle.devnet.keys.DevKeys`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from oracle.abi import artifact
from oracle.devnet.anvil import Anvil
from oracle.devnet.keys import DevKey, DevKeys
from oracle.protocol import PolicyClass


@dataclass(frozen=True)
class StackSettings:
    chain_id: int = 31337
    block_time: float | None = None
    anvil_args: tuple[str, ...] = ()
    # Limits: (maxCallbackGas, maxPromptBytes, maxResultBytes, maxTokens, maxDeadlineWindow,
    # maxModelSpecBytes, maxChoiceLabels)
    limits: tuple[int, int, int, int, int, int, int] = (2_000_000, 16_384, 8_192, 16_384, 86_400, 256, 32)
    # Per policy class, in wei: (baseFee, perCallbackGas, perOutputToken). perCallbackGas is above the
    # local chain's gas price, so fees cover the callback the daemon pays for.
    fees: dict[PolicyClass, tuple[int, int, int]] = field(default_factory=lambda: {
        cls: (10**15 * (2 if cls == PolicyClass.BEST else 1), 3 * 10**9, 10**10) for cls in PolicyClass
    })
    test_usd_for_payment_wallet: int = 1_000_000 * 10**6
    test_usd_for_agents: int = 1_000 * 10**6  # what the agents key pays the gateway with
    votes_for_bots: int = 1_000 * 10**18


class LocalStack:
    """anvil on a free loopback port with the oracle, examples and local tokens deployed."""

    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings()
        self.keys = DevKeys()
        self.anvil = Anvil(chain_id=self.settings.chain_id, block_time=self.settings.block_time,
                           extra_args=self.settings.anvil_args)
        self.addresses: dict[str, str] = {}
        self._w3: Web3 | None = None

    @property
    def w3(self) -> Web3:
        if self._w3 is None:
            raise RuntimeError("LocalStack is not started")
        return self._w3

    @property
    def rpc_url(self) -> str:
        return self.anvil.rpc_url

    @property
    def ws_url(self) -> str:
        return self.anvil.ws_url

    @property
    def chain_id(self) -> int:
        return self.settings.chain_id

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> LocalStack:
        self.anvil.start()
        try:
            self._w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 30}))
            self._deploy_all()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.anvil.stop()
        self._w3 = None

    # ------------------------------------------------------------ contracts

    def contract(self, name: str, address: str | None = None) -> Contract:
        """A web3 contract object for a deployed (or given) address, for setup and inspection."""
        return self.w3.eth.contract(address=Web3.to_checksum_address(address or self.addresses[name]),
                                    abi=artifact(name)["abi"])

    def transact(self, call: Any, sender: DevKey, value: int = 0, gas: int | None = None) -> TxReceipt:
        """Send a contract call from an unlocked dev account and wait for a successful receipt."""
        tx: dict[str, Any] = {"from": sender.address, "value": value}
        if gas is not None:
            tx["gas"] = gas
        receipt = self.w3.eth.wait_for_transaction_receipt(call.transact(tx), timeout=30)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction reverted: {receipt['transactionHash'].hex()}")
        return receipt

    def deploy(self, name: str, *args: Any, sender: DevKey | None = None, label: str | None = None) -> str:
        art = artifact(name)
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = self.transact(factory.constructor(*args), sender or self.keys.owner)
        address = str(receipt["contractAddress"])
        self.addresses[label or name] = address
        return address

    def _deploy_all(self) -> None:
        k, s = self.keys, self.settings
        oracle_address = self.deploy("AIOracle", k.owner.address, s.limits)
        oracle = self.contract("AIOracle")
        self.transact(oracle.functions.setSigner(k.signer.address, k.owner.address), k.owner)
        for cls, schedule in s.fees.items():
            self.transact(oracle.functions.setFeeSchedule(int(cls), schedule), k.owner)

        self.deploy("TypedResultsConsumer", oracle_address)

        self.deploy("TestUSD", k.owner.address)
        self.transact(self.contract("TestUSD").functions.mint(k.payment_wallet.address,
                                                               s.test_usd_for_payment_wallet), k.owner)
        self.transact(self.contract("TestUSD").functions.mint(k.agents.address, s.test_usd_for_agents), k.owner)

        votes_address = self.deploy("DevVotes", k.owner.address)
        votes = self.contract("DevVotes")
        self.transact(votes.functions.mint(k.bots.address, s.votes_for_bots), k.owner)
        self.transact(votes.functions.delegate(k.bots.address), k.bots)
        governor_address = self.deploy("DevGovernor", votes_address)
        # prompts cut at 6 KiB: the local model's 4,096-token window holds that and a 1,024-token answer
        self.deploy("GovernanceSummarizer", oracle_address, governor_address, "best", 2_000_000, 1_024, 2_048,
                    3_600, 6_144)

        vault_address = self.deploy("ExampleVault", k.owner.address)
        sentinel_address = self.deploy("RiskSentinel", oracle_address, vault_address, "fastest", 80,
                                       k.bots.address)
        self.transact(self.contract("ExampleVault").functions.setGuardian(sentinel_address), k.owner)
