"""JSON-RPC over the process's one aiohttp session, and a reconnecting WebSocket log subscription.

Plain primitives in, plain primitives out: hex decoding happens here so callers get ints and bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from oracle.repeated_failure import RepeatedFailure

log = logging.getLogger(__name__)


_BALANCE_OF = bytes.fromhex("70a08231")  # balanceOf(address)


class RpcError(Exception):
    """The node answered with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message
        self.data = data

    @property
    def revert_data(self) -> bytes | None:
        """Revert data of a failed eth_call / eth_estimateGas, when the node gives it."""
        data = self.data
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            try:
                return bytes.fromhex(data[2:])
            except ValueError:
                return None
        return None


class RpcUnavailable(Exception):
    """The node could not be reached, timed out, or answered with something that is not JSON-RPC."""


@dataclass(frozen=True)
class BlockHeader:
    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    base_fee: int


def _int(value: str) -> int:
    return int(value, 16)


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:])


# Calls that only read: asked again at once when the connection drops or the node has an internal
# error. A sweep or a monitor pass makes dozens of them, so a few percent of failures per call would
# otherwise cut short nearly every pass. Timeouts are not asked again (they have cost their time; the
# caller decides, e.g. with a smaller log range), nor is anything that sends.
READS = frozenset({"eth_chainId", "eth_blockNumber", "eth_getBlockByNumber", "eth_getLogs", "eth_getTransactionCount",
                   "eth_getBalance", "eth_getTransactionReceipt", "eth_getTransactionByHash", "eth_call",
                   "eth_feeHistory"})
INTERNAL_ERROR = -32603


class _Dropped(RpcUnavailable):
    """The connection failed before an answer (not a timeout): safe to ask a read again."""


class ChainClient:
    """The JSON-RPC calls the daemon makes, each with a timeout; reads are asked up to `retries` more
    times after a dropped connection or an internal error of the node."""

    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float = 10.0, retries: int = 2, *,
                 name: str | None = None) -> None:
        self._session = session
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ids = itertools.count(1)
        self._retries = retries
        self.retried = 0  # reads asked again
        self.errors = 0  # calls the node did not answer (dropped, timed out, internal error); reverts are answers
        # The node failing (unreachable, timing out, internal errors) is one incident in the log, however
        # many calls meet it; the URL is shown without its path, where providers put API keys.
        where = f"node {url_origin(url)}"
        self.outage = RepeatedFailure(log, f"chain {name}: {where}" if name else where,
                                      {"chain": name} if name else None)

    @property
    def failing(self) -> bool:
        """The node is failing and that is being reported: a caller's own line per failed call is DEBUG."""
        return self.outage.active

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        asked_again = 0
        while True:
            try:
                result = await self._call_once(method, params)
            except (_Dropped, RpcError) as exc:
                if not isinstance(exc, RpcError) or exc.code == INTERNAL_ERROR:
                    self.errors += 1
                if (method not in READS or asked_again == self._retries
                        or (isinstance(exc, RpcError) and exc.code != INTERNAL_ERROR)):
                    if isinstance(exc, RpcError) and exc.code != INTERNAL_ERROR:
                        self.outage.succeeded()  # an answer (a revert, a refusal): the node works
                    else:
                        self.outage.failed(without_paths(str(exc)))
                    raise
                asked_again += 1
                self.retried += 1
                continue
            except RpcUnavailable as exc:
                self.errors += 1
                self.outage.failed(without_paths(str(exc)))
                raise
            self.outage.succeeded()
            return result

    async def _call_once(self, method: str, params: Sequence[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        try:
            async with self._session.post(self.url, json=body, timeout=self._timeout, allow_redirects=False) as resp:
                text = await resp.text()
        except TimeoutError as exc:
            raise RpcUnavailable(f"{method}: {type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise _Dropped(f"{method}: {type(exc).__name__}: {exc}") from exc
        try:
            reply = json.loads(text)
        except ValueError:
            raise RpcUnavailable(f"{method}: not JSON (HTTP {resp.status}): {text[:200]!r}") from None
        if not isinstance(reply, dict):
            raise RpcUnavailable(f"{method}: unexpected reply {text[:200]!r}")
        error = reply.get("error")
        if error is not None:
            code = error.get("code", 0) if isinstance(error, dict) else None
            if not isinstance(code, int):
                raise RpcUnavailable(f"{method}: malformed error {error!r}"[:300])
            raise RpcError(method, code, str(error.get("message", "")), error.get("data"))
        if "result" not in reply:
            raise RpcUnavailable(f"{method}: reply without result")
        return reply["result"]

    async def chain_id(self) -> int:
        return _int(await self.call("eth_chainId", []))

    async def block_number(self) -> int:
        value = await self.call("eth_blockNumber", [])
        try:
            return _int(value)
        except (TypeError, ValueError):
            raise RpcUnavailable(f"eth_blockNumber: not a number: {value!r}"[:300]) from None

    async def header(self, number: int | str) -> BlockHeader | None:
        tag = hex(number) if isinstance(number, int) else number
        block = await self.call("eth_getBlockByNumber", [tag, False])
        if block is None:
            return None
        try:
            return BlockHeader(_int(block["number"]), _bytes(block["hash"]), _bytes(block["parentHash"]),
                               _int(block["timestamp"]), _int(block.get("baseFeePerGas", "0x0")))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise RpcUnavailable(f"eth_getBlockByNumber: malformed block {block!r}"[:300]) from None

    async def get_logs(self, address: str, topics: list[Any], from_block: int, to_block: int) -> list[dict[str, Any]]:
        logs = await self.call("eth_getLogs", [{"address": address, "topics": topics, "fromBlock": hex(from_block),
                                                "toBlock": hex(to_block)}])
        if not isinstance(logs, list):
            raise RpcUnavailable(f"eth_getLogs: expected a list, got {type(logs).__name__}")
        return logs

    async def nonce(self, address: str, block: str = "pending") -> int:
        return _int(await self.call("eth_getTransactionCount", [address, block]))

    async def balance(self, address: str) -> int:
        return _int(await self.call("eth_getBalance", [address, "latest"]))

    async def token_balance(self, token: str, holder: str) -> int:
        """An ERC-20's `balanceOf(holder)`, base units."""
        data = _BALANCE_OF + bytes(12) + bytes.fromhex(holder.removeprefix("0x"))
        return int.from_bytes(await self.eth_call(token, data), "big")

    async def send_raw(self, raw: bytes) -> bytes:
        return _bytes(await self.call("eth_sendRawTransaction", ["0x" + raw.hex()]))

    async def receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.call("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
        return result

    async def transaction_known(self, tx_hash: bytes) -> bool:
        """Whether the node has the transaction (in its pool or in a block)."""
        return await self.call("eth_getTransactionByHash", ["0x" + tx_hash.hex()]) is not None

    async def eth_call(self, to: str, data: bytes, sender: str | None = None, block: str = "latest") -> bytes:
        tx: dict[str, str] = {"to": to, "data": "0x" + data.hex()}
        if sender is not None:
            tx["from"] = sender
        return _bytes(await self.call("eth_call", [tx, block]))

    async def fee_history(self) -> tuple[int, int]:
        """(base fee of the next block, median priority fee paid in the latest block), wei."""
        history = await self.call("eth_feeHistory", [1, "latest", [50]])
        try:
            base = _int(history["baseFeePerGas"][-1])
            rewards = history.get("reward") or [["0x0"]]
            return base, _int(rewards[-1][0])
        except (KeyError, IndexError, TypeError, ValueError):
            raise RpcUnavailable(f"eth_feeHistory: unexpected reply {history!r}"[:300]) from None


def url_origin(url: str) -> str:
    """scheme://host[:port] of a URL: what a log may show of it (paths and queries can hold API keys)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def without_paths(text: str) -> str:
    """`text` with every URL in it cut to its origin (aiohttp's errors quote the whole URL)."""
    return _URL.sub(lambda m: url_origin(m.group(0)), text)


_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s'\"<>()]+", re.IGNORECASE)


class LogSubscription:
    """`eth_subscribe("logs")` over WebSocket, reconnecting with backoff; yields raw log dicts.

    A dropped connection loses whatever was emitted meanwhile: the watcher's sweep catches it up.
    """

    def __init__(self, session: aiohttp.ClientSession, url: str, address: str, topics: list[Any],
                 max_backoff: float = 5.0, *, name: str | None = None) -> None:
        self._session = session
        self.url = url
        where = f"log subscription to {url_origin(url)}"
        self.lost = RepeatedFailure(log, f"chain {name}: {where}" if name else where,
                                    {"chain": name} if name else None, level=logging.INFO)
        self._filter = {"address": address, "topics": topics}
        self._max_backoff = max_backoff
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def logs(self) -> AsyncIterator[dict[str, Any]]:
        backoff = 0.05
        while True:
            try:
                async with self._session.ws_connect(self.url, heartbeat=15.0) as ws:
                    await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                        "params": ["logs", self._filter]})
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        payload = json.loads(message.data)
                        if not isinstance(payload, dict):
                            continue
                        if payload.get("id") == 1:
                            if "error" in payload:
                                raise RpcUnavailable(f"eth_subscribe refused: {payload['error']}")
                            self.connected.set()
                            self.lost.succeeded()
                            backoff = 0.05
                            continue
                        params = payload.get("params")
                        result = params.get("result") if isinstance(params, dict) else None
                        if isinstance(result, dict):
                            yield result
            except (aiohttp.ClientError, TimeoutError, RpcUnavailable, ValueError) as exc:
                self.lost.failed(without_paths(f"{type(exc).__name__}: {exc}; reconnecting"))
            self.connected.clear()
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)
