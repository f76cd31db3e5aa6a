"""Writing the oracle's address into a config file: only that value changes, whatever the layout."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from oracle.config import ConfigError
from oracle.ops.config_file import with_oracle_address, write_address

ADDRESS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TWO_CHAINS = """# two chains
[[chains]]
name = "a"   # first
chain_id = 1
rpc_url = "http://a"
native_price_micro_usd = 1

[chains.gas]
max_fee_per_gas = 5   # a's cap

[[chains]]
# the second chain
name = "b"
chain_id = 2
rpc_url = "http://b"
native_price_micro_usd = 1
[chains.deploy]
owner = { key_env = "K" }
"""


def test_the_address_goes_into_the_named_chain_after_its_urls() -> None:
    edited = with_oracle_address(TWO_CHAINS, 1, ADDRESS)
    assert edited == TWO_CHAINS.replace('rpc_url = "http://b"\n', f'rpc_url = "http://b"\noracle = "{ADDRESS}"\n')


def test_an_existing_line_gets_the_new_value_and_keeps_its_comment_and_quotes_style() -> None:
    old = "'0x0000000000000000000000000000000000000001'"
    text = TWO_CHAINS.replace("chain_id = 1\n", f"chain_id = 1\n  oracle   =   {old}   # set by deploy\n")
    edited = with_oracle_address(text, 0, ADDRESS)
    assert edited == text.replace(old, f'"{ADDRESS}"')


def test_windows_line_endings_are_kept() -> None:
    text = TWO_CHAINS.replace("\n", "\r\n")
    edited = with_oracle_address(text, 0, ADDRESS)
    assert edited == text.replace('rpc_url = "http://a"\r\n', f'rpc_url = "http://a"\r\noracle = "{ADDRESS}"\r\n')


def test_a_chain_with_no_name_or_url_lines_gets_the_line_under_its_header() -> None:
    text = '[[chains]]\n# reorgs\nconfirmations = 3\n'
    assert with_oracle_address(text, 0, ADDRESS) == f'[[chains]]\noracle = "{ADDRESS}"\n# reorgs\nconfirmations = 3\n'
    quoted = '[[chains]]\n"name" = "a"\nconfirmations = 3\n'
    assert with_oracle_address(quoted, 0, ADDRESS) == \
        f'[[chains]]\n"name" = "a"\noracle = "{ADDRESS}"\nconfirmations = 3\n'


def test_a_layout_the_edit_cannot_follow_is_refused_with_what_to_add() -> None:
    inline = 'chains = [{ name = "a", chain_id = 1 }]\n'
    with pytest.raises(ConfigError, match=f'add `oracle = "{ADDRESS}"` to it yourself'):
        with_oracle_address(inline, 0, ADDRESS)
    # An `oracle` key hidden in a multi-line string would be edited in the wrong place: the re-parse catches it.
    tricky = '[[chains]]\nname = "a"\nnote = """\noracle = "x"\n"""\n'
    with pytest.raises(ConfigError, match="laid out in a way this edit does not follow"):
        with_oracle_address(tricky, 0, ADDRESS)


def test_the_file_is_replaced_whole_with_its_mode_and_untouched_when_already_set(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(TWO_CHAINS)
    path.chmod(0o600)
    assert write_address(path, 0, ADDRESS) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.stat().st_mtime_ns, path.read_bytes()
    assert write_address(path, 0, ADDRESS) is False
    assert (path.stat().st_mtime_ns, path.read_bytes()) == written
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]  # no temporary file left
