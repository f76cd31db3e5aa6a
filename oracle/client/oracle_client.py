"""`OracleClient`: quote, send requests, wait for one, follow every settlement, fetch receipts, from
Python (async, web3.py).

    client = await OracleClient.connect("http://127.0.0.1:8545", ws_url="ws://...", oracle="0x...")
    request_id = await client.request(params, key)         # pays the quote unless a fee is given
    result = await client.wait(request_id, timeout=120)    # OracleResult: status, reason, value, ...
    async for item in client.results(ResultFilter(...), from_block=0, confirmations=2, cursor=SqliteCursor(p)):
        ...                                                # Settled, or Retracted after a reorg (oracle.client.follow)
    receipt = await client.receipt(request_id, "https://oracle.example")   # checked against its on-chain hash

The result's value comes from the fulfilment transaction's input (`fulfill` or `fulfillBatch`, sent to the
oracle or relayed through another contract: `oracle.client.responses`), decoded by the request's result
type with `oracle.results`, the same decoder the daemon uses; the `Fulfilled` event itself carries only
the result's hash, which is checked against those bytes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
from eth_utils import keccak, to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.contract import AsyncContract
from web3.exceptions import ContractCustomError, ContractLogicError, Web3Exception

from oracle.abi import abi
from oracle.client.cursor import CursorStore, MemoryCursor
from oracle.client.follow import Follower
from oracle.client.responses import Responses
from oracle.client.settled import ResultFilter, Retracted, Settled
from oracle.client.transact import ClientError, describe_revert, send_call
from oracle.protocol import ReasonCode, RequestParams, ResultSpec, Status
from oracle.results import ResultError, decode_result

LOG_CHUNK = 10_000  # blocks per getLogs when looking for a request's event
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class OracleResult:
    """How a request settled. `status` is `success` or `failure` (answered), `cancelled` (its fee was
    refunded) or `expired` (its deadline passed unanswered; its requester can reclaim the fee)."""

    request_id: bytes
    status: str
    reason: ReasonCode | int
    value: Any  # the decoded result of a success whose bytes were found; None otherwise
    result: bytes | None  # the ABI-encoded result, when found in the fulfilment's input
    model_used: bytes | None
    receipt_hash: bytes | None
    transaction: bytes | None  # the fulfilment's or the cancel's transaction hash
    block_number: int | None
    note: str = ""  # why the value is missing, when it is


@dataclass(frozen=True)
class _Asked:
    """What a request's `Requested` event says: enough to decode and to know when it expires."""

    params: RequestParams
    block_number: int


class ReceiptMismatch(ClientError):
    """A receipt whose keccak is not the hash the chain holds: not the one the signer committed to."""


class OracleClient:
    def __init__(self, w3: AsyncWeb3[Any], oracle: AsyncContract, chain_id: int, ws_url: str | None = None) -> None:
        self.w3 = w3
        self.oracle = oracle
        self.chain_id = chain_id
        self.ws_url = ws_url
        self._asked: dict[bytes, _Asked] = {}
        self._responses = Responses(w3, oracle)

    @classmethod
    async def connect(cls, rpc_url: str, *, oracle: str, ws_url: str | None = None, timeout: float = 30.0) -> Self:
        w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        try:
            chain_id = await w3.eth.chain_id
        except (TimeoutError, OSError, Web3Exception) as exc:
            raise ClientError(f"the node at {rpc_url} does not answer ({type(exc).__name__}: {exc}): is it up, "
                              f"and is the URL right?") from None
        address = to_checksum_address(oracle)
        if not await w3.eth.get_code(address):
            raise ClientError(f"no contract at {address} on chain {chain_id}: is the oracle address right?")
        return cls(w3, w3.eth.contract(address=address, abi=abi("AIOracle")), chain_id, ws_url)

    async def close(self) -> None:
        await self.w3.provider.disconnect()

    async def quote(self, model_spec: str, max_tokens: int, callback_gas_limit: int) -> int:
        """The fee in wei the oracle asks for these settings now."""
        return int(await self._call(self.oracle.functions.quote(model_spec, max_tokens, callback_gas_limit)))

    async def request(self, params: RequestParams, key: bytes, fee: int | None = None) -> bytes:
        """Send `params` from `key`, paying `fee` (default: the quote); return the request id."""
        if fee is None:
            fee = await self.quote(params.model_spec, params.max_tokens, params.callback_gas_limit)
        receipt = await send_call(self.w3, self.oracle.functions.request(params.to_abi()), key, value=fee,
                                  what="the request", chain_id=self.chain_id,
                                  refused="the oracle refuses this request")
        for event in self.oracle.events.Requested().process_receipt(receipt):
            request_id = bytes(event["args"]["requestId"])
            self._asked[request_id] = _Asked(params, receipt["blockNumber"])
            return request_id
        raise ClientError(f"transaction 0x{bytes(receipt['transactionHash']).hex()} emitted no Requested event")

    async def wait(self, request_id: bytes, timeout: float = 300.0, from_block: int = 0) -> OracleResult:
        """Wait until the request is fulfilled or cancelled, or its deadline passes unanswered."""
        asked = await self._find_request(request_id, from_block)
        give_up = time.monotonic() + timeout
        while True:
            settled = await self._settlement(request_id, asked)
            if settled is not None:
                return settled
            if time.monotonic() > give_up:
                raise TimeoutError(f"request 0x{request_id.hex()} was not settled within {timeout:g} s")
            await asyncio.sleep(POLL_SECONDS)

    async def results(self, where: ResultFilter | None = None, *, from_block: int | None = None,
                      confirmations: int = 0, cursor: CursorStore | None = None,
                      poll_interval: float = 1.0, take_on_close: bool = True) -> AsyncGenerator[Settled | Retracted]:
        """Every request that settles — fulfilled (success or failure), cancelled, or expired unanswered —
        once `confirmations` blocks deep, as a typed value; a `Retracted` when a reorg removes one given
        before. Follows from `from_block` (default: the head now) or from where `cursor` stands; see
        `oracle.client.follow` for how it follows, resumes and what a crash repeats. With `take_on_close`
        off, closing the iterator leaves the item in hand untaken, to be given again: for a caller that
        may be stopped (or fail) while it handles one."""
        if confirmations < 0:
            raise ClientError(f"confirmations must be 0 or more, not {confirmations}")
        start = from_block if from_block is not None else await self.w3.eth.block_number
        follower = Follower(self.w3, self.oracle, self.chain_id, where or ResultFilter(), confirmations,
                            cursor if cursor is not None else MemoryCursor(), start, self.ws_url, poll_interval,
                            take_on_close)
        items = follower.items()
        try:
            async for item in items:
                yield item
        finally:  # closing this iterator closes the follower's, which marks the last item taken
            await items.aclose()

    async def receipt(self, request_id: bytes, api_url: str, timeout: float = 30.0) -> dict[str, Any]:
        """The request's receipt from an operator's public listener, checked against the receipt hash its
        `Fulfilled` event holds (ReceiptMismatch when it is not the one committed to). No redirect is
        followed."""
        asked = await self._find_request(request_id, 0)
        events = await self._logs("Fulfilled", request_id, asked.block_number)
        if not events:
            raise ClientError(f"request 0x{request_id.hex()} is not fulfilled on chain {self.chain_id}: it has no "
                              f"receipt yet")
        expected = bytes(events[-1]["args"]["receiptHash"])
        url = f"{api_url.rstrip('/')}/v1/receipts/0x{expected.hex()}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                    session.get(url, allow_redirects=False) as reply:
                body = await reply.read()
                if reply.status != 200:
                    raise ClientError(f"{url} answered {reply.status}: {body[:200]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ClientError(f"{url} could not be read ({type(exc).__name__}: {exc})") from None
        if keccak(body) != expected:
            raise ReceiptMismatch(f"the receipt {url} serves hashes to 0x{keccak(body).hex()}, not to the receipt "
                                  f"hash 0x{expected.hex()} the chain holds for request 0x{request_id.hex()}: it is "
                                  f"not the receipt the answer was signed with")
        document: dict[str, Any] = json.loads(body)
        return document

    # ------------------------------------------------------------------ internals

    async def _call(self, fn: Any) -> Any:
        try:
            return await fn.call()
        except (ContractCustomError, ContractLogicError) as exc:
            raise ClientError(f"the oracle refuses: {describe_revert(exc)}") from None

    async def _logs(self, event: str, request_id: bytes, from_block: int, to_block: int | None = None) -> list[Any]:
        head = await self.w3.eth.block_number if to_block is None else to_block
        found: list[Any] = []
        start = from_block
        while start <= head:
            end = min(head, start + LOG_CHUNK - 1)
            found += await self.oracle.events[event]().get_logs(
                from_block=start, to_block=end, argument_filters={"requestId": request_id})
            start = end + 1
        return found

    async def _find_request(self, request_id: bytes, from_block: int) -> _Asked:
        if request_id in self._asked:
            return self._asked[request_id]
        events = await self._logs("Requested", request_id, from_block)
        if not events:
            raise ClientError(f"no request 0x{request_id.hex()} on oracle {self.oracle.address} (chain "
                              f"{self.chain_id}) from block {from_block}")
        event = events[-1]
        params = RequestParams.from_abi(_params_tuple(event["args"]["params"]))
        asked = _Asked(params, event["blockNumber"])
        self._asked[request_id] = asked
        return asked

    async def _settlement(self, request_id: bytes, asked: _Asked) -> OracleResult | None:
        # The logs and the time are read at one block: a fulfilment mined between two reads is never
        # taken for an expiry.
        head = await self.w3.eth.get_block("latest")
        for event in await self._logs("Fulfilled", request_id, asked.block_number, head["number"]):
            return await self._fulfilled(request_id, asked.params.result, event)
        for event in await self._logs("Cancelled", request_id, asked.block_number, head["number"]):
            return OracleResult(request_id, "cancelled", ReasonCode.NONE, None, None, None, None,
                                bytes(event["transactionHash"]), event["blockNumber"])
        if head["timestamp"] > asked.params.deadline:
            return OracleResult(request_id, "expired", ReasonCode.NONE, None, None, None, None, None, None,
                                note="its deadline passed unanswered: its requester can reclaim the fee")
        return None

    async def _fulfilled(self, request_id: bytes, spec: ResultSpec, event: Any) -> OracleResult:
        args = event["args"]
        status = Status(args["status"])
        tx_hash = bytes(event["transactionHash"])
        response, note = await self._responses.find(tx_hash, request_id, bytes(args["resultHash"]))
        value: Any = None
        result = response.result if response is not None else None
        if status == Status.SUCCESS and result is not None:
            try:
                value = decode_result(spec, result)
            except (ResultError, ValueError) as exc:
                note = f"the result does not decode as {spec.kind.name.lower()}: {exc}"
        return OracleResult(
            request_id, status.name.lower(), _reason(args["reasonCode"]), value, result,
            response.model_used if response is not None else None, bytes(args["receiptHash"]), tx_hash,
            event["blockNumber"], note)


def _params_tuple(params: Any) -> tuple[Any, ...]:
    """web3 gives a struct as a mapping by field name: back to the ABI tuple order."""
    if isinstance(params, dict) or hasattr(params, "keys"):
        result = params["result"]
        spec = (result["kind"], result["maxBytes"], result["min"], result["max"], list(result["labels"]),
                result["abiType"])
        return (params["callback"], params["callbackGasLimit"], params["deadline"], params["maxTokens"],
                params["temperature"], params["seed"], params["modelSpec"], bytes(params["prompt"]), spec)
    return tuple(params)


def _reason(code: int) -> ReasonCode | int:
    """(a code newer than this client stays a number; the receipt names it)"""
    return ReasonCode(code) if code in ReasonCode._value2member_map_ else code
