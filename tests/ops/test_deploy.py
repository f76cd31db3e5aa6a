"""`oracle deploy` on a bare anvil: the oracle it deploys serves the real daemon, a second run changes
nothing, a changed table is sent, the config file keeps its comments, and bad inputs are named."""

from __future__ import annotations

import asyncio
import difflib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import Web3

from oracle.abi import artifact
from oracle.chain.fee_schedule import fee_shortfalls
from oracle.chain.gas import response_gas_bound
from oracle.chain.rpc import ChainClient
from oracle.config import load_config
from oracle.devnet.answer import requested_events
from oracle.devnet.anvil import Anvil
from oracle.devnet.harness import SIGNER_ENV, DaemonProcess, wait_until
from oracle.devnet.model_server import ModelServer
from oracle.ops import sender
from oracle.protocol import Commitment, PolicyClass, RequestParams, ResultSpec, ResultType, Status
from oracle.router.catalog import Catalog
from oracle.router.decision import estimate_prompt_tokens
from oracle.store import request_key
from tests.ops.conftest import running_anvil
from tests.ops.helpers import (
    CAP,
    KEYS,
    OWNER_ENV,
    config_text,
    deploy_contract,
    oracle_address,
    oracle_at,
    oracle_cli,
    sent_by,
    web3_of,
)

pytestmark = pytest.mark.usefixtures("keys_in_env")

BEST_FEES = """[chains.deploy.fees.best]
base_fee = 90000000000000000
per_callback_gas = 200000000000
per_output_token = 300000000
"""


@pytest.fixture(params=[31337, 84532], ids=["anvil", "chain-id-84532"])
def any_chain(request: pytest.FixtureRequest) -> Iterator[Anvil]:
    """A bare anvil with its own chain id: anvil's, and Base Sepolia's."""
    yield from running_anvil(request.param)


def _deployed(capsys: pytest.CaptureFixture[str], anvil: Anvil, tmp: Path) -> Path:
    path = tmp / "config.toml"
    path.write_text(config_text(anvil, tmp))
    result = oracle_cli(capsys, "deploy", "--config", str(path), "--chain", "testnet", "--yes")
    assert result.code == 0, result.out + result.err
    return path


def test_deploy_on_a_bare_chain_then_the_daemon_answers_a_request(any_chain: Anvil, tmp_path: Path) -> None:
    model = ModelServer().start()
    daemon: DaemonProcess | None = None
    try:
        path = tmp_path / "config.toml"
        path.write_text(config_text(any_chain, tmp_path, model_url=model.base_url))
        env = {OWNER_ENV: "0x" + KEYS.owner.private_key.hex(), SIGNER_ENV: "0x" + KEYS.signer.private_key.hex()}
        deployed = subprocess.run([sys.executable, "-m", "oracle", "deploy", "--config", str(path), "--chain",
                                   "testnet", "--yes"], capture_output=True, text=True, env=env, timeout=120)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        address = oracle_address(path)
        w3 = web3_of(any_chain)
        oracle = oracle_at(w3, address)
        assert oracle.functions.owner().call() == KEYS.owner.address
        assert oracle.functions.payeeOf(KEYS.signer.address).call() == KEYS.facilitator.address

        # A consumer of the user's own, then the real daemon on the config as `oracle deploy` left it.
        consumer = w3.eth.contract(address=deploy_contract(w3, "TypedResultsConsumer", address),
                                   abi=artifact("TypedResultsConsumer")["abi"])
        daemon = DaemonProcess(path, {SIGNER_ENV: env[SIGNER_ENV]}).start()
        daemon.wait_ready()
        now = w3.eth.get_block("latest")["timestamp"]
        params = RequestParams(consumer.address, 200_000, now + 300, 64, 0, 1, "cheapest", b"How risky is it?",
                               ResultSpec(ResultType.UINT, min=0, max=100))
        fee = oracle.functions.quote("cheapest", 64, 200_000).call()
        tx = consumer.functions.ask(params.to_abi()).transact({"from": KEYS.bots.address, "value": fee})
        (event,) = requested_events(w3.eth.wait_for_transaction_receipt(tx, timeout=30), address)

        wait_until(lambda: consumer.functions.decoded(event.request_id).call()[0], 60,
                   what="the daemon's answer on-chain")
        _delivered, status, _reason, _text, _flag, value = consumer.functions.decoded(event.request_id).call()[:6]
        assert status == Status.SUCCESS, daemon.log()[-3000:]
        assert value == model.books.answers[request_key(any_chain.chain_id, address, event.request_id)]
    finally:
        if daemon is not None:
            assert daemon.stop() == 0, daemon.log()[-3000:]
        model.stop()


def test_a_second_deploy_sends_nothing_and_leaves_the_config_byte_for_byte(
        bare_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _deployed(capsys, bare_chain, tmp_path)
    before, w3 = path.read_bytes(), web3_of(bare_chain)
    block, sent = w3.eth.block_number, sent_by(w3, KEYS.owner.address)

    again = oracle_cli(capsys, "deploy", "--config", str(path), "--chain", "testnet", "--yes")

    assert again.code == 0, again.err
    assert "up to date" in again.out
    assert "sent 0x" not in again.out
    assert (path.read_bytes(), w3.eth.block_number, sent_by(w3, KEYS.owner.address)) == (before, block, sent)


def test_a_changed_fee_in_the_table_is_sent_on_the_next_run(
        bare_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _deployed(capsys, bare_chain, tmp_path)
    address, w3 = oracle_address(path), web3_of(bare_chain)
    oracle = oracle_at(w3, address)
    others = {cls: oracle.functions.feeSchedule(int(cls)).call() for cls in PolicyClass if cls != PolicyClass.BEST}
    sent = sent_by(w3, KEYS.owner.address)
    path.write_text(config_text(bare_chain, tmp_path, oracle=address, deploy=BEST_FEES))

    changed = oracle_cli(capsys, "deploy", "--config", str(path), "--chain", "testnet", "--yes")

    assert changed.code == 0, changed.err
    assert changed.out.count("sent 0x") == 1
    assert "setFeeSchedule(policyClass=3 (best)" in changed.out
    assert oracle.functions.feeSchedule(int(PolicyClass.BEST)).call() == (90 * 10**15, 200 * 10**9, 300 * 10**6)
    assert {cls: oracle.functions.feeSchedule(int(cls)).call() for cls in others} == others
    assert sent_by(w3, KEYS.owner.address) == sent + 1
    assert oracle_address(path) == address


def test_comments_and_layout_survive_the_address_being_written(
        bare_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = config_text(bare_chain, tmp_path)
    path = _deployed(capsys, bare_chain, tmp_path)
    diff = [line for line in difflib.ndiff(original.splitlines(), path.read_text().splitlines())
            if line.startswith(("+ ", "- "))]
    assert diff == [f'+ oracle = "{oracle_address(path)}"']
    # The line sits in the chain's table, after its URLs.
    lines = path.read_text().splitlines()
    assert lines[lines.index(f'oracle = "{oracle_address(path)}"') - 1].startswith("ws_url = ")


def test_default_fees_cover_the_largest_response_and_the_dearest_model_and_pass_the_daemons_check(
        bare_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _deployed(capsys, bare_chain, tmp_path)
    config = load_config(path)
    chain, oracle = config.chains[0], oracle_at(web3_of(bare_chain), oracle_address(path))
    limits = oracle.functions.limits().call()
    max_prompt, max_result, max_tokens = limits[1], limits[2], limits[3]
    # What answering the largest request costs the operator at the gas cap, in wei.
    commitment = Commitment("0x" + "ff" * 20, "0x" + "ff" * 20, 0, 2**64 - 1, max_result, 2**96 - 1, b"\xff" * 32)
    gas = response_gas_bound(b"\xff" * 32, commitment, chain.gas.fulfill_gas_overhead) * CAP
    model_micro_usd = max(e.estimate(estimate_prompt_tokens(max_prompt), max_tokens) for e in Catalog(config.models)
                          .entries)
    model = model_micro_usd * 10**18 // chain.native_price_micro_usd
    for cls in PolicyClass:
        spec = {PolicyClass.EXACT: "local", PolicyClass.ENSEMBLE: "ensemble:2"}.get(cls, cls.name.lower())
        quote = oracle.functions.quote(spec, max_tokens, 0).call()
        assert quote > gas + model > 0, (cls, quote, gas, model)
        assert min(oracle.functions.feeSchedule(int(cls)).call()) > 0  # never zero, in any part
    # Callback gas at the cap, with what EIP-150 keeps back.
    assert oracle.functions.quote("cheapest", 1, 1_000_000).call() - oracle.functions.quote("cheapest", 1, 0).call() \
        >= 1_000_000 * 64 // 63 * CAP

    async def daemon_check() -> list[object]:
        async with aiohttp.ClientSession() as session:
            return list(await fee_shortfalls(ChainClient(session, chain.rpc_url), chain, CAP))
    assert asyncio.run(daemon_check()) == []


def test_an_address_with_no_contract_is_refused_with_what_to_do(
        bare_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config_text(bare_chain, tmp_path, oracle=KEYS.agents.address))
    before, block = path.read_bytes(), web3_of(bare_chain).eth.block_number

    result = oracle_cli(capsys, "deploy", "--config", str(path), "--chain", "testnet", "--yes")

    assert result.code == 1
    assert f"there is no contract at {KEYS.agents.address} on chain 31337" in result.err
    assert "delete it to deploy a new oracle with `oracle deploy`" in result.err
    assert (path.read_bytes(), web3_of(bare_chain).eth.block_number) == (before, block)  # never deploys over it


def test_a_contract_that_is_not_an_oracle_is_refused(
        bare_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = deploy_contract(web3_of(bare_chain), "TestUSD", KEYS.owner.address)
    path = tmp_path / "config.toml"
    path.write_text(config_text(bare_chain, tmp_path, oracle=token))

    result = oracle_cli(capsys, "deploy", "--config", str(path), "--chain", "testnet", "--yes")

    assert result.code == 1
    assert f"the contract at {token} is not an AIOracle" in result.err


def test_without_yes_and_no_terminal_nothing_is_sent(
        bare_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config_text(bare_chain, tmp_path))
    before, block = path.read_bytes(), web3_of(bare_chain).eth.block_number

    result = oracle_cli(capsys, "deploy", "--config", str(path), "--chain", "testnet")

    assert result.code == 1
    assert "deploy AIOracle(initialOwner=" in result.out  # shown
    assert "no terminal to confirm on; run again with --yes" in result.err  # and not sent
    assert (path.read_bytes(), web3_of(bare_chain).eth.block_number) == (before, block)


@pytest.mark.parametrize(("deploy", "message"), [
    ("max_choice_labels = 1\n", "chains[0] (testnet).deploy.max_choice_labels: Input should be greater than or "
                                "equal to 2"),
    ("max_tokens = 4294967296\n", "chains[0] (testnet).deploy.max_tokens: Input should be less than or equal to"),
    ("colour = 1\n", "chains[0] (testnet).deploy.colour: Extra inputs are not permitted"),
    ("[chains.deploy.fees.fastest]\nbase_fee = -1\nper_callback_gas = 1\nper_output_token = 1\n",
     "chains[0] (testnet).deploy.fees.fastest.base_fee: Input should be greater than or equal to 0"),
    ("[chains.deploy.fees.quickest]\nbase_fee = 1\nper_callback_gas = 1\nper_output_token = 1\n",
     "chains[0] (testnet).deploy.fees.quickest"),
    ("[chains.deploy.fees.best]\nbase_fee = 1\n", "chains[0] (testnet).deploy.fees.best.per_callback_gas: Field "
                                                  "required"),
    # Fees the daemon would refuse: named with the class and the amounts before anything is sent.
    ("[chains.deploy.fees.best]\nbase_fee = 1\nper_callback_gas = 1\nper_output_token = 1\n",
     "chains[testnet].deploy.fees: too low to pay for the smallest response at the gas cap"),
    ("max_callback_gas = 30000000\n", "gas, more than gas.batch_gas_max (15000000): lower them, or raise"),
])
def test_bad_deploy_table_values_are_named(bare_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           deploy: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config_text(bare_chain, tmp_path, deploy=deploy))
    block = web3_of(bare_chain).eth.block_number

    result = oracle_cli(capsys, "deploy", "--config", str(path), "--chain", "testnet", "--yes")

    assert (result.code, web3_of(bare_chain).eth.block_number) == (2, block), result.out + result.err
    assert message in result.err


def test_bad_command_inputs_are_named(bare_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config_text(bare_chain, tmp_path))
    deploy = ("deploy", "--config", str(path), "--yes")

    unknown = oracle_cli(capsys, *deploy, "--chain", "mainnet")
    assert (unknown.code, unknown.err.strip()) == (
        2, "no chain named 'mainnet' in the config; its chains are: 'testnet'")

    monkeypatch.delenv(OWNER_ENV)
    no_key = oracle_cli(capsys, *deploy, "--chain", "testnet")
    assert (no_key.code, no_key.err.strip()) == (2, f"environment variable {OWNER_ENV} (a private key) is not set")

    monkeypatch.setenv(OWNER_ENV, "0x1234")
    short_key = oracle_cli(capsys, *deploy, "--chain", "testnet")
    assert short_key.code == 2 and "is not a 32-byte private key" in short_key.err and "1234" not in short_key.err

    monkeypatch.setenv(OWNER_ENV, "0x" + KEYS.owner.private_key.hex())
    path.write_text(config_text(bare_chain, tmp_path).replace("chain_id = 31337", "chain_id = 84532"))
    wrong_chain = oracle_cli(capsys, *deploy, "--chain", "testnet")
    assert wrong_chain.code == 2 and f"chain_id is 84532 but {bare_chain.rpc_url} serves chain 31337" in wrong_chain.err

    path.write_text(config_text(bare_chain, tmp_path, deploy_table=False))
    missing = oracle_cli(capsys, *deploy, "--chain", "testnet")
    assert missing.code == 2 and "chains[0] (testnet) has no [chains.deploy] table" in missing.err


def test_the_daemon_refuses_a_chain_with_no_oracle_address(
        bare_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config_text(bare_chain, tmp_path))

    result = oracle_cli(capsys, "run", "--config", str(path))

    assert result.code == 2
    assert "chains[testnet].oracle: no oracle address: deploy one with `oracle deploy --config FILE --chain " \
           "testnet`" in result.err
    assert not (tmp_path / "oracle.sqlite").exists()  # refused before anything was opened


def test_a_config_whose_address_line_cannot_be_written_is_refused_before_deploying(
        bare_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    chain = (f'{{ name = "testnet", chain_id = 31337, rpc_url = "{bare_chain.rpc_url}", native_price_micro_usd = 1, '
             f'deploy = {{ owner = {{ key_env = "{OWNER_ENV}" }} }} }}')
    model = ('{ id = "m", provider = "p", api = "openai", base_url = "http://m/v1", model = "m-2024-01-01", '
             'payer = "none", context_window = 8192, max_output = 1024 }')
    path.write_text(f'signer = {{ key_env = "{SIGNER_ENV}" }}\nchains = [{chain}]\nmodels = [{model}]\n')
    block = web3_of(bare_chain).eth.block_number

    result = oracle_cli(capsys, "deploy", "--config", str(path), "--chain", "testnet", "--yes")

    assert result.code == 2
    assert "chains[0] is not written as a [[chains]] table" in result.err
    assert web3_of(bare_chain).eth.block_number == block



@pytest.fixture
def fresh_chain() -> Iterator[Anvil]:
    """An anvil of this test's own: these tests stop its mining and count every creation on it."""
    yield from running_anvil()


def _unmined_deploy(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, chain: Anvil,
                    tmp: Path) -> tuple[Path, ChecksumAddress]:
    """A deploy whose transaction is broadcast but not mined before the command gives up (anvil not mining)."""
    w3 = web3_of(chain)
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    waited = sender.RECEIPT_TIMEOUT
    monkeypatch.setattr(sender, "RECEIPT_TIMEOUT", 1.0)
    path = tmp / "config.toml"
    path.write_text(config_text(chain, tmp))
    first = oracle_cli(capsys, "deploy", "--config", str(path), "--chain", "testnet", "--yes")
    assert first.code == 1 and "is not mined after" in first.err, first.out + first.err
    # The address the transaction creates was on record before it was broadcast.
    address = Web3.to_checksum_address(oracle_address(path))
    assert w3.eth.get_code(address) == b"" and sent_by(w3, KEYS.owner.address) == 0
    monkeypatch.setattr(sender, "RECEIPT_TIMEOUT", waited)
    return path, address


def test_a_deploy_cut_off_before_its_receipt_is_found_again_not_repeated(
        fresh_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path, address = _unmined_deploy(capsys, monkeypatch, fresh_chain, tmp_path)
    w3 = web3_of(fresh_chain)
    w3.provider.make_request("evm_setIntervalMining", [1])  # type: ignore[arg-type]

    again = oracle_cli(capsys, "deploy", "--config", str(path), "--chain", "testnet", "--yes")

    assert again.code == 0, again.out + again.err
    assert "waiting to be mined" in again.out and "deploying" not in again.out
    assert oracle_address(path) == address and w3.eth.get_code(address) != b""
    # One creation: the owner's first transaction made the oracle; the rest were its settings.
    creations = [w3.eth.get_transaction_receipt(HexBytes(tx))["contractAddress"]  # type: ignore[arg-type]
                 for n in range(w3.eth.block_number + 1) for tx in w3.eth.get_block(n)["transactions"]]
    assert [c for c in creations if c is not None] == [address]


def test_a_deploy_the_node_dropped_is_sent_again_to_the_same_address(
        fresh_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path, address = _unmined_deploy(capsys, monkeypatch, fresh_chain, tmp_path)
    w3 = web3_of(fresh_chain)
    w3.provider.make_request("anvil_dropAllTransactions", [])  # type: ignore[arg-type]
    w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]

    again = oracle_cli(capsys, "deploy", "--config", str(path), "--chain", "testnet", "--yes")

    assert again.code == 0, again.out + again.err
    assert "was never mined: sending it again" in again.out
    assert oracle_address(path) == address
    assert oracle_at(w3, address).functions.owner().call() == KEYS.owner.address

