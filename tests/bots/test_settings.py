"""What every bot's config shares: relative paths are from the config file's folder, and a key written
where its variable's name belongs is refused without being echoed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bots.dao_summarizer.config import load_config as load_summarizer
from bots.relay.config import load_config as load_relay
from bots.trading_agent.config import load_config as load_agent
from oracle.config import ConfigError

ORACLE = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
KEY = "0x" + "ab" * 32
CHAIN = f'[chain]\nrpc_url = "http://127.0.0.1:8545"\noracle = "{ORACLE}"\n'


def test_relative_paths_are_from_the_config_files_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "summarizer.toml").write_text(
        CHAIN + '[bot]\nstore = "state/s.sqlite"\nfeed_file = "feed.json"\n'
        f'[[governors]]\nname = "g"\ngovernor = "{ORACLE}"\n')
    (folder / "relay.toml").write_text(
        CHAIN + '[store]\npath = "relay.sqlite"\n[[endpoints]]\nname = "e"\nurl = "http://127.0.0.1:9/h"\n'
        'secret_env = "S"\n')
    (folder / "agent.toml").write_text(
        CHAIN + '[agent]\nkey_env = "K"\nposition_wei = "1"\nstore = "a.sqlite"\n'
        f'[[assets]]\nname = "ETH"\nsentinel = "{ORACLE}"\nvault = "{ORACLE}"\ncontext_file = "ctx.txt"\n')
    monkeypatch.chdir(tmp_path)  # started from elsewhere
    summarizer = load_summarizer(Path("configs/summarizer.toml"))
    assert summarizer.bot.store == folder.resolve() / "state/s.sqlite"
    assert summarizer.bot.feed_file == folder.resolve() / "feed.json"
    assert load_relay(Path("configs/relay.toml")).store.path == folder.resolve() / "relay.sqlite"
    agent = load_agent(Path("configs/agent.toml"))
    assert agent.agent.store == folder.resolve() / "a.sqlite"
    assert agent.assets[0].context_file == folder.resolve() / "ctx.txt"
    assert os.getcwd() == str(tmp_path)


def test_a_key_in_place_of_its_variables_name_is_refused_and_not_echoed(tmp_path: Path) -> None:
    config = tmp_path / "summarizer.toml"
    config.write_text(CHAIN + f'[bot]\nkey_env = "{KEY}"\n[[governors]]\nname = "g"\ngovernor = "{ORACLE}"\n')
    with pytest.raises(ConfigError) as refused:
        load_summarizer(config)
    assert "bot.key_env" in str(refused.value) and "looks like a key itself" in str(refused.value)
    assert KEY[2:] not in str(refused.value)
