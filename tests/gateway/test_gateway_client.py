"""The agents' SDK against the running gateway: `GatewayClient` pays a chat and a signed analysis from an
agent's wallet through its own ledger, and the ledger agrees with the token; an answer lost when the
agent is killed mid-call is fetched again with the same key without paying twice; the payer reads its
own account with a signed message, which is refused stale, replayed, forged or missing; a call no model
answers is an error that costs nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_utils import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3

from oracle.client import ClientError, GatewayClient, GatewayError, send_call
from oracle.config import X402Pin
from oracle.devnet.harness import wait_until
from oracle.devnet.keys import DevKey
from oracle.protocol import ACCOUNT_MESSAGE_HEADER, ResultSpec, ResultType
from oracle.store import Payment, PaymentState
from oracle.x402 import Ledger
from tests.gateway.conftest import DAILY_CAP, Gateway, Reply, http, signed_headers
from tests.gateway.paying_agent import KEY_ENV
from tests.risk_sentinel import deploy_pair

ROOT = Path(__file__).resolve().parents[2]
SCORE = ResultSpec(ResultType.UINT, min=0, max=100)


def pin_of(gw: Gateway) -> X402Pin:
    """Whom the agent agrees to pay: the gateway's network, its TestUSD and its operator."""
    stack = gw.stack
    return X402Pin(network=f"eip155:{stack.chain_id}", asset=stack.addresses["TestUSD"],
                   pay_to=stack.keys.owner.address)


def open_client(gw: Gateway, payer: DevKey, ledger: Path) -> GatewayClient:
    return GatewayClient.open(gw.url, payer.private_key, ledger, pin=pin_of(gw), max_payment=5_000,
                              budget_total=100_000, rpc_url=gw.stack.rpc_url)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def ledger_payment(path: Path, key: str) -> Payment:
    """The ledger's payment for the call `key` (the ledger must not be held by a client)."""
    ledger = Ledger.open(path)
    try:
        found = ledger.payments.payment_for(key, 1)
    finally:
        ledger.close()
    assert found is not None, f"no payment for {key!r} in {path}"
    return found


def read_account(gw: Gateway, address: str, headers: dict[str, str]) -> Reply:
    return http(gw.url + f"/v1/account/{address}", headers=headers)


async def test_a_chat_is_paid_once_and_the_ledger_agrees_with_the_token(gateway: Gateway, tmp_path: Path) -> None:
    payer = gateway.payer(20, 50_000)
    start = gateway.stack.w3.eth.block_number
    before = gateway.balance(payer.address)
    async with open_client(gateway, payer, tmp_path / "agent.sqlite") as client:
        reply = await client.chat(ask("Say hello [[tag:client-chat]]"), max_tokens=64, key="hello-1")
        assert reply.content == "You said: Say hello [[tag:client-chat]]"
        assert reply.model == "dev-model-2026-01-01" and reply.deployment == "local" and reply.paid > 0
        wait_until(lambda: gateway.transfers(payer.address, start) == [reply.paid], 30,
                   what="the chat's payment to settle")
        assert gateway.balance(payer.address) == before - reply.paid
        await client.reconcile()  # the gateway settles after answering: the token tells the ledger
    payment = ledger_payment(tmp_path / "agent.sqlite", "hello-1")
    assert (payment.state, payment.amount, payment.delivered) == (PaymentState.SETTLED, reply.paid, True)
    assert gateway.model.books.tags["client-chat"] == 1


async def test_a_bought_analysis_verifies_and_a_consumer_takes_it_once(gateway: Gateway, tmp_path: Path) -> None:
    stack = gateway.stack
    pair = deploy_pair(stack, label="client")
    sentinel = stack.contract("RiskSentinel", pair.sentinel)
    context = "ETH -25% in 1h [[score:88]]"
    stack.transact(sentinel.functions.registerQuery(context.encode()), stack.keys.bots)
    payer = gateway.payer(21, 50_000)
    async with open_client(gateway, payer, tmp_path / "agent.sqlite") as client:
        analysis = await client.analyze(chain_id=stack.chain_id, model=sentinel.functions.modelSpec().call(),
                                        prompt=context, result=SCORE, consumer=pair.sentinel,
                                        signer=stack.keys.signer.address, oracle=stack.addresses["AIOracle"],
                                        max_tokens=64, key="risk-1")
    assert analysis.value == 88 and analysis.payer == payer.address and analysis.paid > 0

    w3 = AsyncWeb3(AsyncHTTPProvider(stack.rpc_url))
    try:
        consumer = w3.eth.contract(address=to_checksum_address(pair.sentinel), abi=sentinel.abi)
        accept = consumer.functions.acceptSignedResult(*analysis.as_call_args())
        await send_call(w3, accept, stack.keys.agents.private_key, what="acceptSignedResult")
        assert sentinel.functions.lastScore().call() == 88
        with pytest.raises(ClientError, match=f"ResultAlreadyUsed\\(resultId=0x{analysis.result_id.hex()}\\)"):
            await send_call(w3, consumer.functions.acceptSignedResult(*analysis.as_call_args()),
                            stack.keys.agents.private_key, what="acceptSignedResult")
    finally:
        await w3.provider.disconnect()


async def test_an_answer_lost_when_the_agent_is_killed_is_fetched_again_without_paying_twice(
        gateway: Gateway, tmp_path: Path) -> None:
    payer = gateway.payer(22, 50_000)
    start = gateway.stack.w3.eth.block_number
    ledger = tmp_path / "agent.sqlite"
    prompt = "Are you there? [[sleep:3000]] [[tag:client-killed]]"  # the model holds its answer 3 s
    stack = gateway.stack
    agent = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.paying_agent", gateway.url, str(ledger), f"eip155:{stack.chain_id}",
         stack.addresses["TestUSD"], stack.keys.owner.address, stack.rpc_url, "fixed-key", prompt],
        cwd=ROOT, env={**os.environ, KEY_ENV: payer.private_key.hex()}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        # the call reached the model: its payment was signed, stored and sent; its answer is not back yet
        wait_until(lambda: gateway.model.books.tags["client-killed"] == 1 or agent.poll() is not None, 60,
                   what="the agent's paid call to reach the model")
        assert agent.poll() is None, agent.communicate()
        agent.send_signal(signal.SIGKILL)
    finally:
        agent.kill()
        agent.communicate()
    assert gateway.model.books.tags_answered["client-killed"] == 0  # killed before any answer
    lost = ledger_payment(ledger, "fixed-key")
    assert lost.state == PaymentState.SENT

    async with open_client(gateway, payer, ledger) as client:
        reply = await client.chat(ask(prompt), max_tokens=64, key="fixed-key")
        assert reply.content == f"You said: {prompt}" and reply.paid == lost.amount
        wait_until(lambda: gateway.transfers(payer.address, start) == [reply.paid], 30,
                   what="the one payment to settle")
        await client.reconcile()
    assert gateway.model.books.tags["client-killed"] == 1  # the model was asked once
    again = ledger_payment(ledger, "fixed-key")
    assert (again.id, again.nonce, again.state) == (lost.id, lost.nonce, PaymentState.SETTLED)


async def test_the_payer_reads_its_account_with_a_fresh_signed_message(gateway: Gateway, tmp_path: Path) -> None:
    payer = gateway.payer(23, 50_000)
    async with open_client(gateway, payer, tmp_path / "agent.sqlite") as client:
        paid = [(await client.chat(ask(f"Count {n} [[tag:client-account]]"), max_tokens=64)).paid for n in range(2)]
        account = await client.account()
        assert (await client.account()).calls == account.calls  # each read signs a fresh message: both taken
    assert account.address == payer.address
    assert account.calls >= 2 and account.spent == sum(paid) and account.spent_today == account.spent
    assert account.daily_cap == DAILY_CAP and account.last_seen is not None and account.last_seen <= time.time()


@pytest.mark.parametrize("case", ["expired", "replayed", "another-signer", "another-gateway", "no-headers"])
def test_an_account_read_without_a_fresh_message_from_its_owner_is_refused(gateway: Gateway, case: str) -> None:
    owner = gateway.payer(24, 0)
    stranger = gateway.payer(25, 0)
    payee = gateway.stack.keys.owner.address
    if case == "expired":
        headers = signed_headers(owner.address, owner, payee, expires=int(time.time()) - 5)
        says = "expired: sign a new one"
    elif case == "replayed":
        headers = signed_headers(owner.address, owner, payee)
        assert read_account(gateway, owner.address, headers).status == 200
        says = "used already: sign a new one with a fresh nonce"
    elif case == "another-signer":
        headers = signed_headers(owner.address, stranger, payee)
        says = f"not signed by {owner.address}"
    elif case == "another-gateway":  # signed for another operator's gateway: not taken here
        headers = signed_headers(owner.address, owner, stranger.address)
        says = f"for the gateway paid to {stranger.address}, not this one"
    else:
        headers = {}
        says = f"send {ACCOUNT_MESSAGE_HEADER}"
    got = read_account(gateway, owner.address, headers)
    assert got.status == 401 and says in got.json()["error"], got.body
    assert got.headers.get("WWW-Authenticate", "").startswith("EIP191")


async def test_a_call_no_model_answers_raises_and_costs_nothing(gateway: Gateway, tmp_path: Path) -> None:
    payer = gateway.payer(26, 50_000)
    start = gateway.stack.w3.eth.block_number
    async with open_client(gateway, payer, tmp_path / "agent.sqlite") as client:
        with pytest.raises(GatewayError) as failed:
            await client.chat(ask("[[400]] [[tag:client-failed]]"), max_tokens=64, key="fails")
        assert failed.value.status == 502 and failed.value.reason
        assert f"reason {failed.value.reason}; nothing is charged" in str(failed.value)
        # a later call of the same payer settles; the failed one never does
        ok = await client.chat(ask("[[tag:client-after-failure]]"), max_tokens=64)
        wait_until(lambda: len(gateway.transfers(payer.address, start)) == 1, 30, what="the later call to settle")
    assert gateway.transfers(payer.address, start) == [ok.paid]
    assert gateway.model.books.tags["client-failed"] >= 1  # the model was asked, and failed
    assert "no model answered" in failed.value.error  # the gateway's own words came through
