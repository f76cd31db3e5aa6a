"""The floor the daemon is measured against: a minimal process doing only the irreducible work per
request, on the same chain, with the same batching. It takes each request's log from a WebSocket
subscription, decodes it, signs the EIP-712 response (a fixed answer), batches what arrived together
into `fulfillBatch` (at most `batch_max`), signs the transaction with coincurve and RLP and sends it.
Nothing is stored, priced, simulated, checked against a deadline or asked of a model; a restart loses
everything. It exists to be timed, never to be run against a real chain.

    python -m bench.floor --rpc URL --ws URL --oracle 0x... --batch-max 64   (signer key in ORACLE_SIGNER_KEY)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import aiohttp
import coincurve
import rlp  # type: ignore[import-untyped]
from eth_utils import keccak, to_canonical_address

from oracle.chain.calldata import fulfill_batch_calldata
from oracle.chain.gas import fulfilment_gas
from oracle.chain.signer import ResponseSigner
from oracle.config import GasSettings
from oracle.devnet.harness import SIGNER_ENV
from oracle.events import REQUESTED_TOPIC, RequestedEvent, decode_requested
from oracle.protocol import ReasonCode, Response, Status, model_used
from oracle.results import encode_result

MAX_FEE = 50 * 10**9
PRIORITY_FEE = 10**9
RECEIPT = keccak(b"floor")
MODEL = model_used(("dev-model",))


class Floor:
    def __init__(self, rpc_url: str, oracle: str, key: bytes, chain_id: int, batch_max: int) -> None:
        self.rpc_url = rpc_url
        self.oracle = oracle
        self.to = to_canonical_address(oracle)
        self.key = coincurve.PrivateKey(key)
        self.signer = ResponseSigner(key, chain_id, oracle)
        self.chain_id = chain_id
        self.batch_max = batch_max
        self.overhead = GasSettings().fulfill_gas_overhead
        self.nonce = 0
        self.queue: list[tuple[Response, Any, bytes]] = []
        self.ready = asyncio.Event()

    def take(self, event: RequestedEvent) -> None:
        response = Response(event.request_id, event.commitment.hash(), Status.SUCCESS, ReasonCode.NONE,
                            encode_result(event.params.result, 42), MODEL, RECEIPT)
        self.queue.append((response, event.commitment, self.signer.sign_response(response)))
        self.ready.set()

    def transaction(self, batch: list[tuple[Response, Any, bytes]]) -> bytes:
        """An EIP-1559 transaction carrying `batch`, signed: 0x02 || rlp(fields + (y, r, s))."""
        data = fulfill_batch_calldata(batch)
        gas = fulfilment_gas([c.callback_gas_limit for _, c, _ in batch], data, self.overhead)
        fields = [self.chain_id, self.nonce, PRIORITY_FEE, MAX_FEE, gas, self.to, 0, data, []]
        signature = self.key.sign_recoverable(keccak(b"\x02" + rlp.encode(fields)), hasher=None)
        self.nonce += 1
        signed: bytes = rlp.encode([*fields, signature[64], int.from_bytes(signature[:32], "big"),
                                    int.from_bytes(signature[32:64], "big")])
        return b"\x02" + signed

    async def send_loop(self, session: aiohttp.ClientSession) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.queue:
                batch, self.queue = self.queue[:self.batch_max], self.queue[self.batch_max:]
                raw = self.transaction(batch)
                body = {"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": ["0x" + raw.hex()]}
                async with session.post(self.rpc_url, json=body) as resp:
                    reply = await resp.json()
                if "error" in reply:
                    print(f"floor: refused: {reply['error']}", file=sys.stderr)


async def _rpc(session: aiohttp.ClientSession, url: str, method: str, params: list[Any]) -> Any:
    async with session.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}) as resp:
        return (await resp.json())["result"]


async def run(rpc_url: str, ws_url: str, oracle: str, batch_max: int) -> None:
    key = bytes.fromhex(os.environ[SIGNER_ENV].removeprefix("0x"))
    async with aiohttp.ClientSession() as session:
        chain_id = int(await _rpc(session, rpc_url, "eth_chainId", []), 16)
        floor = Floor(rpc_url, oracle, key, chain_id, batch_max)
        sender = "0x" + keccak(floor.key.public_key.format(compressed=False)[1:])[-20:].hex()
        floor.nonce = int(await _rpc(session, rpc_url, "eth_getTransactionCount", [sender, "pending"]), 16)
        sending = asyncio.create_task(floor.send_loop(session))
        async with session.ws_connect(ws_url, max_msg_size=0) as ws:
            await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                "params": ["logs", {"address": oracle, "topics": ["0x" + REQUESTED_TOPIC.hex()]}]})
            print("floor running", flush=True)
            async for message in ws:
                payload = json.loads(message.data)
                log = payload.get("params", {}).get("result") if isinstance(payload, dict) else None
                if isinstance(log, dict) and not log.get("removed"):
                    floor.take(decode_requested(log))
        sending.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpc", required=True)
    parser.add_argument("--ws", required=True)
    parser.add_argument("--oracle", required=True)
    parser.add_argument("--batch-max", type=int, default=64)
    args = parser.parse_args(argv)
    asyncio.run(run(args.rpc, args.ws, args.oracle, args.batch_max))
    return 0


if __name__ == "__main__":
    sys.exit(main())
