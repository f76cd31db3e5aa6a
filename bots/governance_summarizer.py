"""Governance summarizer bot: asks for an AI summary of every new proposal on a Governor.

It follows the Governor's `ProposalCreated` events from a block cursor and, for each proposal that
has no summary yet, calls `GovernanceSummarizer.summarize(...)` with the proposal's own actions and
description (the contract checks them against `hashProposal`) and the quoted fee. The oracle daemon
answers; the summary lands in the contract.

    python -m bots.governance_summarizer --rpc http://127.0.0.1:8545 \\
        --governor 0x... --summarizer 0x... --key-env BOT_KEY
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.logs import DISCARD

from oracle.abi import abi


@dataclass(frozen=True)
class Asked:
    proposal_id: int
    request_id: bytes
    tx_hash: bytes


class GovernanceSummarizerBot:
    def __init__(self, w3: Web3, governor: str, summarizer: str, account: LocalAccount, from_block: int = 0) -> None:
        self.w3 = w3
        self.governor = w3.eth.contract(address=Web3.to_checksum_address(governor), abi=abi("DevGovernor"))
        self.summarizer = w3.eth.contract(address=Web3.to_checksum_address(summarizer),
                                          abi=abi("GovernanceSummarizer"))
        self.account = account
        self.next_block = from_block

    def poll_once(self) -> list[Asked]:
        """Ask for a summary of each proposal created since the last poll; returns what was asked."""
        head = self.w3.eth.block_number
        if head < self.next_block:
            return []
        events = self.governor.events.ProposalCreated().get_logs(from_block=self.next_block, to_block=head)
        asked = [a for a in (self._ask(e["args"]) for e in events) if a is not None]
        self.next_block = head + 1
        return asked

    def _ask(self, proposal: Any) -> Asked | None:
        proposal_id = proposal["proposalId"]
        if self.summarizer.functions.hasSummary(proposal_id).call():
            return None
        call = self.summarizer.functions.summarize(
            proposal["targets"], proposal["values"], proposal["calldatas"], proposal["description"])
        fee = self.summarizer.functions.quote().call()
        tx = call.build_transaction({
            "from": self.account.address,
            "value": fee,
            "nonce": self.w3.eth.get_transaction_count(self.account.address, "pending"),
        })
        signed = self.account.sign_transaction(dict(tx))  # type: ignore[arg-type]
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
        if receipt["status"] != 1:
            raise RuntimeError(f"summarize reverted for proposal {proposal_id}: {tx_hash.hex()}")
        (requested,) = self.summarizer.events.SummaryRequested().process_receipt(receipt, errors=DISCARD)
        return Asked(proposal_id, bytes(requested["args"]["requestId"]), bytes(tx_hash))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpc", required=True)
    parser.add_argument("--governor", required=True)
    parser.add_argument("--summarizer", required=True)
    parser.add_argument("--key-env", default="BOT_KEY", help="environment variable holding the bot's key")
    parser.add_argument("--from-block", type=int, default=0)
    parser.add_argument("--interval", type=float, default=12.0, help="seconds between polls")
    args = parser.parse_args(argv)
    key = os.environ.get(args.key_env)
    if not key:
        parser.error(f"set ${args.key_env} to the bot's private key")
    bot = GovernanceSummarizerBot(Web3(Web3.HTTPProvider(args.rpc)), args.governor, args.summarizer,
                                  Account.from_key(key), args.from_block)
    while True:
        for asked in bot.poll_once():
            print(f"proposal {asked.proposal_id}: asked, request 0x{asked.request_id.hex()}", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
