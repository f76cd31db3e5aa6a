"""The real local x402 stack: anvil with TestUSD, the SDK-based facilitator, and the paywalled model server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from oracle.config import KeySource, X402Pin, X402Settings
from oracle.devnet import LocalStack
from oracle.devnet.facilitator import Facilitator
from oracle.devnet.model_server import ModelServer
from oracle.devnet.paywall import Paywall
from oracle.store import Store
from oracle.x402 import PayingClient, PaymentWallet

PRICE = 2_500  # base units of TestUSD (6 decimals): 0.0025 USD per call


@dataclass
class X402Stack:
    stack: LocalStack
    facilitator: Facilitator
    model: ModelServer
    paywall: Paywall
    network: str

    @property
    def pin(self) -> X402Pin:
        return X402Pin(network=self.network, asset=self.stack.addresses["TestUSD"],
                       pay_to=self.stack.keys.owner.address)

    def balance(self, address: str) -> int:
        return int(self.stack.contract("TestUSD").functions.balanceOf(address).call())

    def settings(self, **overrides: Any) -> X402Settings:
        values: dict[str, Any] = {
            "wallet": KeySource(key_env="ORACLE_PAYMENT_KEY"),
            "networks": [{"network": self.network, "rpc_url": self.stack.rpc_url}],
            "max_payment": 10_000, "max_validity_seconds": 300, "max_unresolved": 8,
            "budget": {"total": 1_000_000, "per_provider": 1_000_000, "per_requester": 1_000_000},
        }
        values.update(overrides)
        return X402Settings.model_validate(values)


def start_x402(stack: LocalStack, version: int = 2) -> X402Stack:
    network = f"eip155:{stack.chain_id}"
    facilitator = Facilitator(stack.rpc_url, stack.keys.facilitator.private_key, [network]).start()
    paywall = Paywall(facilitator.url, network, stack.addresses["TestUSD"], stack.keys.owner.address, PRICE,
                      version=version)
    model = ModelServer(paywall=paywall).start()
    return X402Stack(stack, facilitator, model, paywall, network)


def running_x402() -> Iterator[X402Stack]:
    """A local stack of its own with the facilitator and the paywalled model server, stopped after."""
    with LocalStack() as stack:
        s = start_x402(stack)
        try:
            yield s
        finally:
            s.model.stop()
            s.facilitator.stop()


@pytest.fixture(scope="module")
def x402_stack() -> Iterator[X402Stack]:
    yield from running_x402()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "ledger.sqlite")
    yield s
    s.close()


@asynccontextmanager
async def paying_client(s: X402Stack, store: Store, **overrides: Any) -> AsyncIterator[PayingClient]:
    async with aiohttp.ClientSession() as session:
        yield PayingClient(session, PaymentWallet(s.stack.keys.payment_wallet.private_key), s.settings(**overrides),
                           store.payments)
