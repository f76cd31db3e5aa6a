"""The bots' configs for the local stack: `oracle dev` writes them beside its own config and prints the
command that runs each one (`python -m bots.dao_summarizer` on the local Governor and its summarizer,
`python -m bots.trading_agent` on the local RiskSentinel and ExampleVault), with the dev key it uses."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from oracle.devnet.harness import write_config
from oracle.devnet.stack import LocalStack

CONTEXT_FILE = "eth_context.txt"
SUMMARIZER_KEY_ENV = "DAO_SUMMARIZER_KEY"
AGENT_KEY_ENV = "TRADING_AGENT_KEY"
# The context the agent sends: on this chain the local model's score follows `[[score:N]]`, so editing
# the file steers it (a real deployment feeds market data here).
DEV_CONTEXT = "ETH/USD market snapshot: price steady, funding neutral, vault utilisation 40%. [[score:35]]\n"


@dataclass(frozen=True)
class DevBot:
    name: str
    config: Path
    key_env: str
    key: bytes

    def command(self) -> str:
        return f"{self.key_env}=0x{self.key.hex()} {sys.executable} -m bots.{self.name} --config {self.config}"


def write_bot_configs(stack: LocalStack, workdir: Path) -> list[DevBot]:
    chain = {"rpc_url": stack.rpc_url, "ws_url": stack.ws_url, "oracle": stack.addresses["AIOracle"],
             "confirmations": 0}  # anvil mines a block per transaction: with no traffic, no deeper block comes
    summarizer = write_config({
        "chain": chain,
        "bot": {"key_env": SUMMARIZER_KEY_ENV, "store": str(workdir / "dao_summarizer.sqlite"),
                "feed_file": str(workdir / "dao_feed.json"), "scan_interval": 2.0, "retry_interval": 30.0},
        "http": {"port": 0},
        "governors": [{"name": "local", "governor": stack.addresses["DevGovernor"],
                       "summarizer": stack.addresses["GovernanceSummarizer"], "from_block": 0}],
    }, workdir / "dao_summarizer.toml")
    context = workdir / CONTEXT_FILE
    context.write_text(DEV_CONTEXT)
    agent = write_config({
        "chain": chain,
        "agent": {"key_env": AGENT_KEY_ENV, "store": str(workdir / "trading_agent.sqlite"), "interval": 60,
                  "max_score_age": 600, "reduce_above": 50, "close_above": 70, "reopen_below": 30,
                  "position_wei": str(10**18)},
        "assets": [{"name": "ETH", "sentinel": stack.addresses["RiskSentinel"],
                    "vault": stack.addresses["ExampleVault"], "context_file": str(context)}],
    }, workdir / "trading_agent.toml")
    # Each sender its own key, so no two race for one account's nonces: the agent the bots key (it owns
    # the RiskSentinel), the summarizer the owner key (idle once the demo is done), and the agents key is
    # left to the developer (the local Governor takes proposals from any account).
    return [DevBot("dao_summarizer", summarizer, SUMMARIZER_KEY_ENV, stack.keys.owner.private_key),
            DevBot("trading_agent", agent, AGENT_KEY_ENV, stack.keys.bots.private_key)]
