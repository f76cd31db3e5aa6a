"""The facilitator settles many payments at once, each exactly once, under nonces in order, and keeps
settling when a nonce of its key is taken elsewhere or dropped by the node.

anvil's automine is off while settlements are sent, so every transaction is in the node's pool before
one block mines them all: each answer then comes from that block, so no settlement waited for another's
receipt before it was sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from eth_account import Account
from eth_typing import HexStr
from x402.mechanisms.evm.exact.client import ExactEvmScheme
from x402.schemas import PaymentPayload, PaymentRequirements

from oracle.devnet import LocalStack
from oracle.devnet.facilitator import Facilitator
from oracle.devnet.harness import until
from oracle.x402 import PaymentWallet

AMOUNT = 1_000


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack() as s:
        yield s


@pytest.fixture(scope="module")
def facilitator(stack: LocalStack) -> Iterator[Facilitator]:
    f = Facilitator(stack.rpc_url, stack.keys.facilitator.private_key, [f"eip155:{stack.chain_id}"]).start()
    yield f
    f.stop()


@pytest.fixture
def manual_mining(stack: LocalStack) -> Iterator[None]:
    stack.w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        yield
    finally:
        stack.w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]


def _requirements(stack: LocalStack) -> PaymentRequirements:
    return PaymentRequirements(scheme="exact", network=f"eip155:{stack.chain_id}", asset=stack.addresses["TestUSD"],
                               amount=str(AMOUNT), pay_to=stack.keys.owner.address, max_timeout_seconds=300,
                               extra={"name": "Test USD", "version": "2"})


def _payments(stack: LocalStack, n: int) -> list[dict[str, Any]]:
    """`n` payments of AMOUNT, each its own EIP-3009 authorization (a fresh random nonce)."""
    requirements = _requirements(stack)
    scheme = ExactEvmScheme(PaymentWallet(stack.keys.payment_wallet.private_key).signer)
    return [PaymentPayload(payload=scheme.create_payment_payload(requirements), accepted=requirements)
            .model_dump(mode="json", by_alias=True, exclude_none=True) for _ in range(n)]


async def _settle(session: aiohttp.ClientSession, facilitator: Facilitator, stack: LocalStack,
                  payment: dict[str, Any]) -> dict[str, Any]:
    body = {"x402Version": 2, "paymentPayload": payment,
            "paymentRequirements": _requirements(stack).model_dump(mode="json", by_alias=True, exclude_none=True)}
    async with session.post(f"{facilitator.url}/settle", json=body, timeout=aiohttp.ClientTimeout(total=60)) as resp:
        answer: dict[str, Any] = await resp.json()
        return answer


def _pending_nonce(stack: LocalStack) -> int:
    return stack.w3.eth.get_transaction_count(stack.keys.facilitator.address, "pending")


def _mine(stack: LocalStack) -> None:
    stack.w3.provider.make_request("anvil_mine", [1])  # type: ignore[arg-type]


def _balances(stack: LocalStack) -> tuple[int, int]:
    usd = stack.contract("TestUSD").functions
    return (int(usd.balanceOf(stack.keys.payment_wallet.address).call()),
            int(usd.balanceOf(stack.keys.owner.address).call()))


def _transfers_since(stack: LocalStack, block: int) -> tuple[list[Any], list[Any]]:
    """(Transfer events payer -> payee, AuthorizationUsed events by the payer) from `block` on."""
    usd = stack.contract("TestUSD")
    payer, payee = stack.keys.payment_wallet.address, stack.keys.owner.address
    transfers = [e for e in usd.events.Transfer().get_logs(from_block=block)
                 if e["args"]["from"] == payer and e["args"]["to"] == payee]
    used = [e for e in usd.events.AuthorizationUsed().get_logs(from_block=block) if e["args"]["authorizer"] == payer]
    return transfers, used


def _assert_each_paid_once(stack: LocalStack, answers: list[dict[str, Any]], payments: list[dict[str, Any]],
                           first_block: int, before: tuple[int, int]) -> list[Any]:
    """Every answer a success, every authorization used once on-chain, balances moved by exactly that;
    the settlements' transactions."""
    n = len(payments)
    assert [a.get("success") for a in answers] == [True] * n, [a for a in answers if not a.get("success")][:3]
    transfers, used = _transfers_since(stack, first_block)
    assert len(transfers) == n and all(e["args"]["value"] == AMOUNT for e in transfers)
    assert sorted(e["args"]["nonce"].hex() for e in used) == sorted(
        p["payload"]["authorization"]["nonce"].removeprefix("0x") for p in payments)
    assert _balances(stack) == (before[0] - n * AMOUNT, before[1] + n * AMOUNT)
    txs = [stack.w3.eth.get_transaction(HexStr(a["transaction"])) for a in answers]
    assert {e["transactionHash"].to_0x_hex() for e in transfers} == {a["transaction"] for a in answers}
    return txs


async def test_fifty_concurrent_settlements_are_sent_at_once_and_each_is_mined_once(
        stack: LocalStack, facilitator: Facilitator, manual_mining: None) -> None:
    payments = _payments(stack, 50)
    before, first_block, first_nonce = _balances(stack), stack.w3.eth.block_number + 1, _pending_nonce(stack)
    async with aiohttp.ClientSession() as session:
        settling = [asyncio.create_task(_settle(session, facilitator, stack, p)) for p in payments]
        await until(lambda: _pending_nonce(stack) == first_nonce + 50, 30.0, what="all fifty in the node's pool")
        assert not any(t.done() for t in settling)  # none answered before its transfer is mined
        _mine(stack)
        answers = await asyncio.gather(*settling)
    txs = _assert_each_paid_once(stack, answers, payments, first_block, before)
    assert sorted(tx["nonce"] for tx in txs) == list(range(first_nonce, first_nonce + 50))
    assert {tx["blockNumber"] for tx in txs} == {first_block}
    receipts = [stack.w3.eth.get_transaction_receipt(tx["hash"]) for tx in txs]
    assert all(r["status"] == 1 for r in receipts)


async def test_a_nonce_taken_by_another_sender_of_the_key_is_skipped_without_waiting(
        stack: LocalStack, facilitator: Facilitator, manual_mining: None) -> None:
    first, second = _payments(stack, 5), _payments(stack, 5)
    before, first_block, first_nonce = _balances(stack), stack.w3.eth.block_number + 1, _pending_nonce(stack)
    async with aiohttp.ClientSession() as session:
        settling = [asyncio.create_task(_settle(session, facilitator, stack, p)) for p in first]
        await until(lambda: _pending_nonce(stack) == first_nonce + 5, 30.0, what="the first five in the node's pool")
        # The key's next nonce taken from outside, priced above what the facilitator pays, so the
        # node keeps it rather than the facilitator's transaction under the same nonce.
        key = Account.from_key(stack.keys.facilitator.private_key)
        outside = key.sign_transaction({"to": key.address, "value": 0, "gas": 21_000, "chainId": stack.chain_id,
                                        "gasPrice": 100 * stack.w3.eth.gas_price, "nonce": first_nonce + 5})
        outside_hash = stack.w3.eth.send_raw_transaction(outside.raw_transaction)
        settling += [asyncio.create_task(_settle(session, facilitator, stack, p)) for p in second]
        await until(lambda: _pending_nonce(stack) == first_nonce + 11, 30.0, what="the other five in the pool after it")
        _mine(stack)
        answers = await asyncio.gather(*settling)
    txs = _assert_each_paid_once(stack, answers, first + second, first_block, before)
    assert stack.w3.eth.get_transaction_receipt(outside_hash)["blockNumber"] == first_block
    taken = first_nonce + 5
    assert sorted(tx["nonce"] for tx in txs) == [n for n in range(first_nonce, first_nonce + 11) if n != taken]
    assert {tx["blockNumber"] for tx in txs} == {first_block}


async def test_settlements_the_node_drops_are_sent_again_under_the_nonces_it_lacks(
        stack: LocalStack, facilitator: Facilitator, manual_mining: None) -> None:
    """anvil drops a transaction from its pool with those queued behind it, as a reorg that does not
    bring them back does: the node's count falls below the facilitator's."""
    payments = _payments(stack, 5)
    before, first_block, first_nonce = _balances(stack), stack.w3.eth.block_number + 1, _pending_nonce(stack)
    key, token = stack.keys.facilitator.address, stack.addresses["TestUSD"]

    def pool() -> dict[str, dict[str, dict[str, Any]]]:
        content = stack.w3.provider.make_request("txpool_content", [])["result"]  # type: ignore[arg-type]
        return {kind: content[kind].get(key.lower(), {}) for kind in ("pending", "queued")}

    async with aiohttp.ClientSession() as session:
        settling = [asyncio.create_task(_settle(session, facilitator, stack, p)) for p in payments]
        await until(lambda: _pending_nonce(stack) == first_nonce + 5, 30.0, what="all five in the node's pool")
        dropped = pool()["pending"][str(first_nonce)]["hash"]
        stack.w3.provider.make_request("anvil_dropTransaction", [dropped])  # type: ignore[arg-type]
        assert _pending_nonce(stack) == first_nonce
        # Repaired with nothing mined: every settlement held again, nothing queued behind a gap.
        await until(lambda: not (held := pool())["queued"] and sum(
            tx["to"] == token.lower() for tx in held["pending"].values()) == 5, 30.0,
            what="every settlement held again")
        _mine(stack)
        answers = await asyncio.gather(*settling)
    txs = _assert_each_paid_once(stack, answers, payments, first_block, before)
    assert dropped not in {a["transaction"] for a in answers}
    block = stack.w3.eth.get_block(first_block, full_transactions=True)
    ours = [tx for tx in block["transactions"] if not isinstance(tx, bytes) and tx["from"] == key]
    assert [tx["nonce"] for tx in ours] == list(range(first_nonce, first_nonce + len(ours)))  # no gap left
    assert {tx["hash"] for tx in ours} == {tx["hash"] for tx in txs}  # the gap taken by settlements, not filled


async def test_a_settlement_asked_again_after_it_was_pending_is_answered_from_the_transaction_sent(
        stack: LocalStack, manual_mining: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("oracle.devnet.facilitator.CONFIRMATION_TIMEOUT", 0.5)
    impatient = Facilitator(stack.rpc_url, stack.keys.facilitator.private_key, [f"eip155:{stack.chain_id}"]).start()
    try:
        payments = _payments(stack, 1)
        before, first_block = _balances(stack), stack.w3.eth.block_number + 1
        async with aiohttp.ClientSession() as session:
            pending = await _settle(session, impatient, stack, payments[0])
            assert pending["success"] is False and pending["errorReason"] == "settlement_pending"
            _mine(stack)  # mined after the answer: the authorization is used now
            answer = await _settle(session, impatient, stack, payments[0])
    finally:
        impatient.stop()
    assert answer["success"] is True and answer["transaction"] == pending["transaction"]
    _assert_each_paid_once(stack, [answer], payments, first_block, before)
