"""Each chain's status: where its intake stands, requests by state, what today cost, what is left of the
day's gas budget, and, when the chain is read, its head and the wallets' balances.

Today is the UTC day, as the daemon's gas budget counts it."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
from eth_account import Account

from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.config import ChainSettings, Config, ConfigError
from oracle.store import Store
from oracle.views.parse import REQUEST_GROUPS
from oracle.views.records import ChainStatus


@dataclass(frozen=True)
class Wallets:
    """The addresses whose balances matter on a chain, and the x402 assets paid in on it."""

    signer: str | None
    payment_wallet: str | None
    assets: tuple[str, ...]


@dataclass
class ChainReads:
    """What was read from a chain's node for its status; `error` says why a part is missing."""

    head: int | None = None
    signer_balance: int | None = None
    wallet_balances: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def wallets(store: Store, config: Config, chain: ChainSettings) -> Wallets:
    """The signer and payment wallet: from their keys when this process can load them, otherwise the
    addresses the store shows sending transactions and payments."""
    signer = _address_of(config.signer.load) if config.signer else None
    if signer is None:
        senders = store.queries.senders(chain.chain_id)
        signer = senders[0] if len(senders) == 1 else None
    wallet = None
    if config.x402 is not None:
        wallet = _address_of(config.x402.wallet.load)
        if wallet is None:
            payers = store.queries.payers()
            wallet = payers[0] if len(payers) == 1 else None
    network = f"eip155:{chain.chain_id}"
    assets = tuple(sorted({m.x402.asset for m in config.models if m.x402 is not None and m.x402.network == network}))
    return Wallets(signer, wallet, assets)


def _address_of(load: object) -> str | None:
    try:
        key = load()  # type: ignore[operator]
    except ConfigError:
        return None  # not this process's to know: read-only commands run without the keys
    return str(Account.from_key(key).address)


async def read_chain(session: aiohttp.ClientSession, chain: ChainSettings, who: Wallets,
                     timeout: float = 5.0) -> ChainReads:
    """The head and balances from the chain's node; a node that does not answer gives the reason instead."""
    client = ChainClient(session, str(chain.rpc_url), timeout=min(timeout, chain.rpc_timeout), retries=0)
    reads = ChainReads()
    try:
        reads.head = await client.block_number()
        if who.signer is not None:
            reads.signer_balance = await client.balance(who.signer)
        if who.payment_wallet is not None:
            for asset in who.assets:
                reads.wallet_balances[asset] = await client.token_balance(asset, who.payment_wallet)
    except (RpcUnavailable, RpcError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reads.error = f"{chain.rpc_url} did not answer: {exc or type(exc).__name__}"
    return reads


def chain_status(store: Store, config: Config, chain: ChainSettings, who: Wallets, reads: ChainReads | None,
                 now: float) -> ChainStatus:
    day_start = datetime.datetime.fromtimestamp(now, datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = day_start.strftime("%Y-%m-%d")
    oracle = chain.oracle_address
    found = store.blocks.cursor(chain.chain_id, oracle) if oracle else None
    cursor = found[0] if found is not None else None
    by_state = dict(sorted(store.requests.count_by_state(chain.chain_id).items()))
    gas_spent = store.txs.gas_spent(chain.chain_id, today)
    head = reads.head if reads else None
    return ChainStatus(
        name=chain.name, chain_id=chain.chain_id, oracle=oracle, head=head, cursor=cursor,
        lag=max(0, head - cursor) if head is not None and cursor is not None else None,
        requests_by_state=by_state, pending=sum(by_state.get(s, 0) for s in REQUEST_GROUPS["pending"]),
        failures_today=store.queries.failures_since(chain.chain_id, day_start.timestamp()),
        gas_spent_today_wei=str(gas_spent), gas_daily_budget_wei=str(chain.gas.daily_budget),
        gas_left_today_wei=str(max(0, chain.gas.daily_budget - gas_spent)),
        model_spend_today_micro_usd=store.queries.model_spend_since(chain.chain_id, day_start.timestamp()),
        x402_spend_today={a: str(v) for a, v in store.queries.x402_spend_since(chain.chain_id,
                                                                               day_start.timestamp()).items()},
        signer=who.signer, signer_balance_wei=str(reads.signer_balance) if reads and reads.signer_balance is not None
        else None, payment_wallet=who.payment_wallet,
        payment_wallet_balances={a: str(v) for a, v in (reads.wallet_balances if reads else {}).items()},
        chain_error=reads.error if reads else None)


async def read_chains(config: Config, chains: Sequence[ChainSettings], who: Sequence[Wallets]) -> list[ChainReads]:
    """Every chain's reads at once, in one HTTP session."""
    import asyncio

    async with aiohttp.ClientSession() as session:
        return list(await asyncio.gather(*(read_chain(session, c, w) for c, w in zip(chains, who, strict=True))))
