"""Finding a fulfilment's result bytes. The `Fulfilled` event carries the result's hash, not its bytes
(adding them would cost every fulfilment gas for the sake of subscribers): they are in the input of a
`fulfill` or `fulfillBatch` call to the oracle. A transaction sent to the oracle is decoded as it is; one
relayed through another contract is read from its call trace (`debug_traceTransaction` with the call
tracer), every call to the oracle in it. Bytes are used only when their keccak is the event's result
hash, so a relay cannot pass off other bytes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from eth_abi import decode
from eth_utils import keccak, to_checksum_address
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.exceptions import Web3Exception

from oracle.abi import input_types, signature

CACHE = 4_096  # fulfilment transactions whose responses are kept decoded
_FULFILL = keccak(text=signature("AIOracle", "fulfill"))[:4]
_FULFILL_BATCH = keccak(text=signature("AIOracle", "fulfillBatch"))[:4]
_RESPONSE = input_types("AIOracle", "fulfill")[0]  # (requestId, commitment, status, reason, result, model, receipt)
if input_types("AIOracle", "fulfillBatch")[0] != _RESPONSE + "[]":
    raise RuntimeError("fulfillBatch's first argument is not an array of fulfill's response: update _decode")


@dataclass(frozen=True)
class Response:
    result: bytes
    model_used: bytes


class Responses:
    def __init__(self, w3: AsyncWeb3[Any], oracle: AsyncContract) -> None:
        self.w3, self.oracle = w3, oracle
        self._txs: OrderedDict[bytes, dict[bytes, Response] | str] = OrderedDict()

    async def find(self, tx_hash: bytes, request_id: bytes, result_hash: bytes) -> tuple[Response | None, str]:
        """The response for `request_id` in the fulfilment `tx_hash`; or None and why."""
        carried = self._txs.get(tx_hash)
        if carried is None:
            carried = await self._read(tx_hash)
            self._txs[tx_hash] = carried
            while len(self._txs) > CACHE:
                self._txs.popitem(last=False)
        if isinstance(carried, str):
            return None, carried
        found = carried.get(request_id)
        if found is None:
            return None, "the fulfilment transaction carries no response for this request"
        if keccak(found.result) != result_hash:
            return None, "the result found for this request does not hash to the event's result hash: not used"
        return found, ""

    async def _read(self, tx_hash: bytes) -> dict[bytes, Response] | str:
        tx = await self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        to = tx.get("to")
        if to == self.oracle.address:
            return self._decode([bytes(tx["input"])])
        try:
            reply = await self.w3.provider.make_request(
                "debug_traceTransaction", ["0x" + tx_hash.hex(), {"tracer": "callTracer"}])
        except (Web3Exception, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            reply = {"error": str(exc)}
        if not isinstance(reply, dict) or not isinstance(reply.get("result"), dict):
            why = reply.get("error") if isinstance(reply, dict) else reply
            return (f"fulfilled through {to}, and the node serves no call trace ({why}): the value is not read; "
                    f"use a node with debug_traceTransaction to read relayed fulfilments")
        return self._decode(calls_to(reply["result"], str(self.oracle.address)))

    def _decode(self, inputs: Iterable[bytes]) -> dict[bytes, Response]:
        """The responses of `fulfill` and `fulfillBatch` calls, by request id (eth_abi on the response
        argument alone: the commitments and signatures that follow are not read)."""
        out: dict[bytes, Response] = {}
        for data in inputs:
            selector, args = data[:4], data[4:]
            try:
                if selector == _FULFILL:
                    carried = [decode([_RESPONSE], args)[0]]
                elif selector == _FULFILL_BATCH:
                    carried = list(decode([_RESPONSE + "[]"], args)[0])
                else:
                    continue
            except Exception:  # eth_abi's many decoding errors: calldata that is not a fulfilment's
                continue
            for request_id, _, _, _, result, model, _ in carried:
                out.setdefault(bytes(request_id), Response(bytes(result), bytes(model)))
        return out


def calls_to(frame: Any, address: str) -> list[bytes]:
    """The inputs of every call to `address` in a call tracer's frame tree, in order (reverted frames
    included: the event's result hash picks the one that settled)."""
    out = []
    if isinstance(frame, dict):
        to = frame.get("to")
        if isinstance(to, str) and len(to) == 42 and to_checksum_address(to) == address and \
                frame.get("type", "CALL") == "CALL":
            data = frame.get("input") or "0x"
            out.append(bytes.fromhex(data[2:]))
        for child in frame.get("calls") or []:
            out += calls_to(child, address)
    return out
