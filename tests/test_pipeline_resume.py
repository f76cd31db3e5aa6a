"""The pipeline resuming a request whose block a reorg replaced with the same request in another block:
the signed answer stands (no second model call, the same signature), as after a restart that finds
it so. Real parts throughout: the request on anvil, the watcher's intake of its log, the store, the
router against the local model server, the signer and a transaction manager's queue."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from oracle.chain.clock import ChainClock
from oracle.chain.rpc import ChainClient
from oracle.chain.signer import ResponseSigner
from oracle.chain.tx import TxManager
from oracle.chain.watcher import TOPICS, RequestWatcher
from oracle.config import load_config
from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.harness import dev_config, write_config
from oracle.devnet.model_server import ModelServer
from oracle.pipeline import Pipeline
from oracle.protocol import RequestParams, ResultSpec, ResultType
from oracle.router import Catalog, ModelRouter
from oracle.store import RequestState, Store, request_key
from tests.daemon.helpers import anvil_rpc


async def test_a_signed_answer_stands_when_its_request_is_re_included(stack: LocalStack, tmp_path: Path) -> None:
    model = ModelServer().start()
    store = Store.open(tmp_path / "oracle.sqlite")
    try:
        config = load_config(write_config(dev_config(stack, model.base_url, tmp_path / "oracle.sqlite"),
                                          tmp_path / "config.toml"))
        chain = config.chains[0]
        anvil_rpc(stack, "anvil_mine", [1])  # a time jump an earlier test left pending lands before "now"
        now = stack.w3.eth.get_block("latest")["timestamp"]
        event = ask(stack, RequestParams(stack.addresses["TypedResultsConsumer"], 500_000, now + 300, 64, 0, 1,
                                         "dev-model-2026-01-01", b"Rate the proposal.",
                                         ResultSpec(ResultType.UINT, min=0, max=9)))
        key = request_key(stack.chain_id, chain.oracle, event.request_id)
        async with aiohttp.ClientSession() as session:
            rpc = ChainClient(session, stack.rpc_url)
            watcher = RequestWatcher(chain, rpc, store.requests, store.blocks, ChainClock())
            block = stack.w3.eth.block_number
            (raw,) = await rpc.get_logs(chain.oracle, TOPICS, block, block)

            def pipeline() -> Pipeline:  # a fresh transaction manager each time, as after a restart
                router = ModelRouter(Catalog(config.models), session, store.routing, config.router)
                signer = ResponseSigner(stack.keys.signer.private_key, stack.chain_id, chain.oracle)
                txm = TxManager(chain, rpc, store.requests, store.txs, stack.keys.signer.private_key)
                return Pipeline(chain, config.pipeline, store.requests, router, signer, txm, lambda: 10**9)

            watcher.ingest([raw])
            first = pipeline()
            row = store.requests.get(key)
            assert row is not None
            await first.advance(row)
            signed = store.requests.get(key)
            assert signed is not None and signed.state == RequestState.SIGNED and first.txm.carries(key)
            assert model.books.calls[key] == 1

            # A reorg: the request's block is replaced; the same request is in the new one.
            store.requests.rollback_after(stack.chain_id, chain.oracle, block - 1)
            watcher.ingest([{**raw, "blockHash": "0x" + "ee" * 32}])
            again = store.requests.get(key)
            assert again is not None and again.state == RequestState.CONFIRMED
            assert again.signature == signed.signature and again.block_hash == b"\xee" * 32

            second = pipeline()
            await second.advance(again)
            resumed = store.requests.get(key)
            assert resumed is not None and resumed.state == RequestState.SIGNED and second.txm.carries(key)
            assert resumed.signature == signed.signature and resumed.receipt_hash == signed.receipt_hash
            assert model.books.calls[key] == 1  # the stored answer stands: the model was not asked again
    finally:
        store.close()
        model.stop()
