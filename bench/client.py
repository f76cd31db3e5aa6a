"""The subscriber client following a fast feeder (`make bench`, bench/results/client.json).

A feeder with a signer of its own, registered on the local oracle (anvil, one-second blocks), fulfils
requests made beforehand with `fulfillBatch` (64 responses a transaction, signed before the clock
starts) at FEED_RATE responses a second. `OracleClient.results()` follows at depth 0 in this process,
woken by its `newHeads` subscription:

- feeder_per_s: fulfilments a second on-chain over the feeding window (first to last fulfilling block,
  by when this process first saw each block);
- results_per_s: results the iterator gave a second over the same window;
- behind_ms: when the last result was given after its block was first seen (the client kept up when
  it is about one block's work);
- delivery_ms_p50 / p99: from the fulfilment's block first served (its `newHeads` notification, seen
  by this process) to the iterator giving the result, over every result.

Beside it, in the same process on the same feed, a floor follows too: at each `newHeads` notification
it reads that block's `Fulfilled` logs and decodes them (no cursor, no reorg check, no value decoded
from the transaction's input, no expiry); `delivery_ratio` is the client's p50 over the floor's.

    python -m bench.client [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import aiohttp
from eth_account import Account
from eth_utils import keccak

from bench.daemon import Observed, _offer, _presign, _subscribe
from bench.report import finish
from oracle.chain.calldata import fulfill_batch_calldata
from oracle.chain.signer import ResponseSigner
from oracle.client import OracleClient, Settled
from oracle.devnet import LocalStack
from oracle.devnet.gas import NOOP_CODE, NOOP_CONSUMER
from oracle.devnet.stack import StackSettings
from oracle.events import FULFILLED_TOPIC, REQUESTED_TOPIC, decode_fulfilled, decode_requested
from oracle.protocol import ReasonCode, Response, Status, model_used
from oracle.results import encode_result

FEED_RATE = 1_350.0  # offered; the chain takes what a block holds
BATCH = 64
TARGETS = {"feeder_per_s": 1_200.0, "results_per_s": 1_000.0, "delivery_ms_p50": 20.0}
LIMITS = {"feeder_per_s": "min", "results_per_s": "min", "delivery_ms_p50": "max"}
FEEDER_KEY = keccak(b"bench feeder signer")


def _requests(stack: LocalStack, count: int) -> list[Any]:
    """`count` requests on-chain before the clock starts; their Requested events."""
    start = stack.w3.eth.block_number + 1
    asyncio.run(_offer(stack.rpc_url, _presign(stack, count), rate=3_000.0))
    oracle = stack.contract("AIOracle").address
    events: list[Any] = []
    give_up = time.monotonic() + 120
    while len(events) < count:
        if time.monotonic() > give_up:
            raise RuntimeError(f"only {len(events)} of {count} requests were mined")
        time.sleep(1.0)
        events = [decode_requested(log) for log in stack.w3.eth.get_logs(
            {"address": oracle, "fromBlock": start, "topics": ["0x" + REQUESTED_TOPIC.hex()]})]
    return events


def _fulfilments(stack: LocalStack, events: list[Any]) -> list[bytes]:
    """`fulfillBatch` transactions answering every request, signed by the feeder's registered signer."""
    oracle = stack.contract("AIOracle")
    feeder = Account.from_key(FEEDER_KEY)
    stack.w3.provider.make_request("anvil_setBalance", [feeder.address, hex(10**22)])  # type: ignore[arg-type]
    stack.transact(oracle.functions.setSigner(feeder.address, feeder.address), stack.keys.owner)
    signer = ResponseSigner(FEEDER_KEY, stack.chain_id, oracle.address)
    model = model_used(("bench-model",))
    raws = []
    nonce = stack.w3.eth.get_transaction_count(feeder.address)
    for i in range(0, len(events), BATCH):
        batch = []
        for n, e in enumerate(events[i:i + BATCH]):
            response = Response(e.request_id, e.commitment.hash(), Status.SUCCESS, ReasonCode.NONE,
                                encode_result(e.params.result, (i + n) % 101), model, keccak(e.request_id))
            batch.append((response, e.commitment, signer.sign_response(response)))
        raws.append(bytes(Account.sign_transaction({
            "type": 2, "chainId": stack.chain_id, "nonce": nonce + i // BATCH, "to": oracle.address, "value": 0,
            "data": fulfill_batch_calldata(batch), "gas": 3_000_000, "maxFeePerGas": 50 * 10**9,
            "maxPriorityFeePerGas": 10**9}, FEEDER_KEY).raw_transaction))
    return raws


async def _follow(stack: LocalStack, raws: list[bytes], count: int, start: int) -> dict[str, float]:
    seen = Observed()
    ready = asyncio.Event()
    heads = asyncio.create_task(_subscribe(stack.ws_url, "newHeads",
                                           lambda e: seen.heads.setdefault(int(e[1]["number"], 16), e[0]), ready))
    await ready.wait()
    client = await OracleClient.connect(stack.rpc_url, ws_url=stack.ws_url, oracle=stack.addresses["AIOracle"])
    given: list[tuple[float, int]] = []  # (when given, block)
    items = client.results(from_block=start, confirmations=0, poll_interval=1.0)

    async def follow() -> None:
        async for item in items:
            if isinstance(item, Settled) and item.event == "fulfilled":
                given.append((time.perf_counter(), item.block_number))
                if len(given) == count:
                    return

    floor: list[tuple[float, int]] = []
    follower = asyncio.create_task(follow())
    floor_task = asyncio.create_task(_floor(stack, count, floor))
    await asyncio.sleep(0.5)  # subscribed and caught up before the feed starts
    await _offer(stack.rpc_url, raws, rate=FEED_RATE / BATCH)
    await asyncio.wait_for(follower, 120)
    await asyncio.wait_for(floor_task, 30)
    await items.aclose()
    await client.close()
    heads.cancel()
    blocks = sorted({b for _, b in given})
    window = seen.heads[blocks[-1]] - seen.heads[blocks[0]]
    per_block = {b: sum(1 for _, x in given if x == b) for b in blocks}
    in_window = count - per_block[blocks[0]]  # fulfilments after the first block's, over the blocks between
    delivery = [(t - seen.heads[b]) * 1_000 for t, b in given if b in seen.heads]
    floor_delivery = [(t - seen.heads[b]) * 1_000 for t, b in floor if b in seen.heads]
    cuts = statistics.quantiles(delivery, n=100)
    first_given = min(t for t, b in given if b == blocks[0])
    return {
        "feeder_per_s": round(in_window / window, 1) if window > 0 else 0.0,
        "results_per_s": round(in_window / (given[-1][0] - first_given), 1),
        "behind_ms": round((given[-1][0] - seen.heads[blocks[-1]]) * 1_000, 2),
        "delivery_ms_p50": round(statistics.median(delivery), 2), "delivery_ms_p99": round(cuts[98], 2),
        "floor_delivery_ms_p50": round(statistics.median(floor_delivery), 2),
        "delivery_ratio": round(statistics.median(delivery) / statistics.median(floor_delivery), 3),
        "results": count, "blocks": len(blocks), "largest_block": max(per_block.values()),
    }


async def _floor(stack: LocalStack, count: int, out: list[tuple[float, int]]) -> None:
    """The least a follower does: at each new head, that block's Fulfilled logs, decoded."""
    heads: asyncio.Queue[int] = asyncio.Queue()
    ready = asyncio.Event()
    listener = asyncio.create_task(_subscribe(stack.ws_url, "newHeads", lambda e: heads.put_nowait(
        int(e[1]["number"], 16)), ready))
    await ready.wait()
    oracle = stack.addresses["AIOracle"]
    async with aiohttp.ClientSession() as session:
        while len(out) < count:
            number = await heads.get()
            body = {"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [{
                "address": oracle, "fromBlock": hex(number), "toBlock": hex(number),
                "topics": ["0x" + FULFILLED_TOPIC.hex()]}]}
            async with session.post(stack.rpc_url, json=body) as reply:
                logs = (await reply.json())["result"]
            for log in logs:
                decode_fulfilled(log)
                out.append((time.perf_counter(), number))
    listener.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer results (a smoke run, not the targets)")
    args = parser.parse_args(argv)
    count = 2_400 if args.quick else 12_000
    with LocalStack(StackSettings(block_time=1, anvil_args=("--gas-limit", "2000000000"))) as stack:
        stack.w3.provider.make_request("anvil_setCode", [NOOP_CONSUMER, NOOP_CODE])  # type: ignore[arg-type]
        events = _requests(stack, count)
        raws = _fulfilments(stack, events)
        figures = asyncio.run(_follow(stack, raws, count, stack.w3.eth.block_number + 1))
    missed = [k for k, kind in LIMITS.items()
              if (figures[k] > TARGETS[k] if kind == "max" else figures[k] < TARGETS[k])]
    return finish("client", figures, {k: f"{'<=' if v == 'max' else '>='} {TARGETS[k]}" for k, v in LIMITS.items()},
                  missed)


if __name__ == "__main__":
    sys.exit(main())
