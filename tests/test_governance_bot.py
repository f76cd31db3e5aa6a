"""The governance bot asks once per new proposal, and the answer lands as the proposal's summary."""

from __future__ import annotations

from eth_account import Account

from bots.governance_summarizer import GovernanceSummarizerBot
from oracle.devnet import LocalStack
from oracle.devnet.answer import fulfill, requested_events, success_response


def test_bot_asks_once_per_proposal_and_summary_is_stored(stack: LocalStack) -> None:
    governor = stack.contract("DevGovernor")
    summarizer = stack.contract("GovernanceSummarizer")
    bot = GovernanceSummarizerBot(stack.w3, stack.addresses["DevGovernor"], stack.addresses["GovernanceSummarizer"],
                                  Account.from_key(stack.keys.bots.private_key), stack.w3.eth.block_number + 1)
    votes = stack.addresses["DevVotes"]
    mint = stack.contract("DevVotes").encode_abi("mint", args=[stack.keys.agents.address, 5])
    description = "# Grant\nMint 5 votes to the agents' treasury."
    stack.transact(governor.functions.propose([votes], [0], [mint], description), stack.keys.bots)

    (asked,) = bot.poll_once()
    assert bot.poll_once() == []  # nothing new: nothing asked again

    receipt = stack.w3.eth.get_transaction_receipt(asked.tx_hash)  # type: ignore[arg-type]
    (event,) = requested_events(receipt, stack.addresses["AIOracle"])
    assert description.encode() in event.params.prompt
    assert event.params.result.abi_type == "(string,uint8,string)"
    fulfill(stack, event, success_response(event, ("Mints 5 votes to the agents.", 20, "Small, reversible.")))
    summary = summarizer.functions.summaryOf(asked.proposal_id).call()
    assert tuple(summary[:3]) == ("Mints 5 votes to the agents.", 20, "Small, reversible.")


def test_a_description_cut_inside_a_character_still_gets_a_summary(stack: LocalStack) -> None:
    governor = stack.contract("DevGovernor")
    summarizer = stack.contract("GovernanceSummarizer")
    bot = GovernanceSummarizerBot(stack.w3, stack.addresses["DevGovernor"], stack.addresses["GovernanceSummarizer"],
                                  Account.from_key(stack.keys.bots.private_key), stack.w3.eth.block_number + 1)
    limit = stack.contract("AIOracle").functions.limits().call()[1]  # maxPromptBytes
    votes = stack.addresses["DevVotes"]
    mint = stack.contract("DevVotes").encode_abi("mint", args=[stack.keys.agents.address, 1])
    # four paddings put the prompt's cut at each byte of a 4-byte character
    for pad in range(4):
        stack.transact(governor.functions.propose([votes], [0], [mint], "# Long" + " " * pad + "\n" + "🗳" * limit),
                       stack.keys.bots)
    asked = bot.poll_once()
    assert len(asked) == 4
    for a in asked:
        receipt = stack.w3.eth.get_transaction_receipt(a.tx_hash)  # type: ignore[arg-type]
        (event,) = requested_events(receipt, stack.addresses["AIOracle"])
        prompt = event.params.prompt
        assert len(prompt) <= limit and prompt.endswith(b"\n[truncated]")
        prompt.decode("utf-8")  # whole characters only: the daemon would refuse anything else
        fulfill(stack, event, success_response(event, ("Long.", 5, "Padding only.")))
        assert summarizer.functions.hasSummary(a.proposal_id).call()
