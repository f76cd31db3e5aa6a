"""`oracle admin` on an oracle `oracle deploy` put on a bare anvil: each action's effect read back from
the chain, reverts named from the ABI before anything is sent, and bad inputs refused."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from web3 import Web3
from web3.contract import Contract

from oracle.abi import artifact
from oracle.chain.calldata import fulfill_calldata
from oracle.chain.signer import ResponseSigner
from oracle.devnet.answer import requested_events, success_response
from oracle.devnet.anvil import Anvil
from oracle.devnet.keys import DevKey
from oracle.protocol import PolicyClass, RequestParams, ResultSpec, ResultType
from tests.ops.helpers import (
    KEYS,
    Outcome,
    config_text,
    deploy_contract,
    oracle_address,
    oracle_at,
    oracle_cli,
    sent_by,
    web3_of,
)

pytestmark = pytest.mark.usefixtures("keys_in_env")
NOBODY = Web3.to_checksum_address("0x000000000000000000000000000000000000dead")


class Admin:
    """An oracle deployed for one test, and `oracle admin` on it."""

    def __init__(self, anvil: Anvil, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.path = tmp / "config.toml"
        self.path.write_text(config_text(anvil, tmp))
        deployed = oracle_cli(capsys, "deploy", "--config", str(self.path), "--chain", "testnet", "--yes")
        assert deployed.code == 0, deployed.err
        self.w3 = web3_of(anvil)
        self.oracle: Contract = oracle_at(self.w3, oracle_address(self.path))

    def __call__(self, *args: str) -> Outcome:
        return oracle_cli(self.capsys, "admin", "--config", str(self.path), "--chain", "testnet", *args)

    def send(self, *args: str) -> Outcome:
        """An action that sends, with --yes; it must succeed."""
        result = self(*args, "--yes")
        assert result.code == 0, result.out + result.err
        assert result.out.count("sent 0x") == 1 and "mined in block" in result.out
        return result


@pytest.fixture
def admin(bare_chain: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Admin:
    return Admin(bare_chain, tmp_path, capsys)


KeyEnv = Callable[[str, DevKey], str]


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> KeyEnv:
    """Put a dev key in an environment variable; its name, for --key-env."""
    def put(name: str, key: DevKey) -> str:
        monkeypatch.setenv(name, "0x" + key.private_key.hex())
        return name
    return put


def test_show_prints_the_oracles_settings_signer_and_payee(admin: Admin) -> None:
    shown = admin("show")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert f"owner           {KEYS.owner.address}" in lines
    assert "pending owner   none" in lines and "paused          no" in lines
    assert "limits          maxCallbackGas=2000000 maxPromptBytes=16384 maxResultBytes=8192 maxTokens=16384 " \
           "maxDeadlineWindow=86400 maxModelSpecBytes=256 maxChoiceLabels=32" in lines
    base, per_gas, per_token = admin.oracle.functions.feeSchedule(int(PolicyClass.BEST)).call()
    assert any(line.split() == ["best", f"baseFee={base}", f"perCallbackGas={per_gas}", f"perOutputToken={per_token}"]
               for line in lines)
    assert f"signer          {KEYS.signer.address}: registered, payee {KEYS.facilitator.address}" in lines
    assert any(line.startswith("payee balance   0 (0.00 USD) to withdraw from the oracle") for line in lines)


def test_set_signer_and_remove_signer(admin: Admin) -> None:
    admin.send("set-signer", KEYS.agents.address, KEYS.bots.address)
    assert admin.oracle.functions.payeeOf(KEYS.agents.address).call() == KEYS.bots.address
    admin.send("remove-signer", KEYS.agents.address)
    assert admin.oracle.functions.payeeOf(KEYS.agents.address).call() == Web3.to_checksum_address("0x" + "00" * 20)
    shown = admin("show", "--signer", KEYS.agents.address)
    assert f"{KEYS.agents.address}: not registered; register it with `oracle admin" in shown.out


def test_set_fees_changes_one_class_and_keeps_the_parts_not_given(admin: Admin) -> None:
    before = {cls: admin.oracle.functions.feeSchedule(int(cls)).call() for cls in PolicyClass}
    sent = admin.send("set-fees", "fastest", "--base-fee", str(before[PolicyClass.FASTEST][0] + 1),
                      "--per-output-token", "77")
    assert "setFeeSchedule(policyClass=2 (fastest), schedule=(baseFee=" in sent.out
    after = {cls: admin.oracle.functions.feeSchedule(int(cls)).call() for cls in PolicyClass}
    assert after[PolicyClass.FASTEST] == (before[PolicyClass.FASTEST][0] + 1, before[PolicyClass.FASTEST][1], 77)
    assert {c: v for c, v in after.items() if c != PolicyClass.FASTEST} == \
        {c: v for c, v in before.items() if c != PolicyClass.FASTEST}


def test_set_limits_changes_the_limits_given(admin: Admin) -> None:
    admin.send("set-limits", "--max-tokens", "4096", "--max-choice-labels", "8")
    assert admin.oracle.functions.limits().call() == (2_000_000, 16_384, 8_192, 4_096, 86_400, 256, 8)


def test_pause_and_unpause(admin: Admin) -> None:
    admin.send("pause")
    assert admin.oracle.functions.paused().call() is True
    assert "paused          yes" in admin("show").out
    admin.send("unpause")
    assert admin.oracle.functions.paused().call() is False


def test_two_step_ownership_transfer(admin: Admin, key_env: KeyEnv) -> None:
    admin.send("transfer-ownership", KEYS.agents.address)
    assert admin.oracle.functions.owner().call() == KEYS.owner.address  # not until accepted
    assert f"pending owner   {KEYS.agents.address}" in admin("show").out
    new_owner = key_env("NEW_OWNER_KEY", KEYS.agents)
    admin.send("accept-ownership", "--key-env", new_owner)
    assert admin.oracle.functions.owner().call() == KEYS.agents.address
    assert admin.oracle.functions.pendingOwner().call() == Web3.to_checksum_address("0x" + "00" * 20)
    # The deploy table's key is no longer the owner's: a change from it is named, not sent.
    refused = admin("pause", "--yes")
    assert refused.code == 1 and f"OwnableUnauthorizedAccount(account={KEYS.owner.address})" in refused.err


def test_the_payee_withdraws_the_fees_of_a_fulfilled_request(admin: Admin, key_env: KeyEnv) -> None:
    fee = _fulfil_one_request(admin)
    payee = KEYS.facilitator.address
    assert admin.oracle.functions.balanceOf(payee).call() == fee
    assert f"payee balance   {(Decimal(fee) / 10**18).normalize():f} (" in admin("show").out
    before = admin.w3.eth.get_balance(NOBODY)

    admin.send("withdraw", "--key-env", key_env("PAYEE_KEY", KEYS.facilitator), "--to", NOBODY)

    assert admin.oracle.functions.balanceOf(payee).call() == 0
    assert admin.w3.eth.get_balance(NOBODY) - before == fee


def _fulfil_one_request(admin: Admin) -> int:
    """A request answered by the registered signer, as the daemon would: the fee goes to its payee."""
    w3, address = admin.w3, admin.oracle.address
    consumer = w3.eth.contract(address=deploy_contract(w3, "TypedResultsConsumer", address),
                               abi=artifact("TypedResultsConsumer")["abi"])
    now = w3.eth.get_block("latest")["timestamp"]
    params = RequestParams(consumer.address, 100_000, now + 300, 16, 0, 1, "cheapest", b"yes?",
                           ResultSpec(ResultType.BOOL))
    fee = admin.oracle.functions.quote("cheapest", 16, 100_000).call()
    tx = consumer.functions.ask(params.to_abi()).transact({"from": KEYS.bots.address, "value": fee})
    (event,) = requested_events(w3.eth.wait_for_transaction_receipt(tx), address)
    response = success_response(event, True)
    signature = ResponseSigner(KEYS.signer.private_key, w3.eth.chain_id, address).sign_response(response)
    sent = w3.eth.send_transaction({"from": KEYS.signer.address, "to": address, "gas": 1_000_000,
                                    "data": fulfill_calldata(response, event.commitment, signature)})
    assert w3.eth.wait_for_transaction_receipt(sent)["status"] == 1
    return int(fee)


def test_a_revert_in_simulation_is_named_from_the_abi_and_nothing_is_sent(admin: Admin, key_env: KeyEnv) -> None:
    stranger = key_env("STRANGER_KEY", KEYS.agents)
    block = admin.w3.eth.block_number

    not_owner = admin("pause", "--key-env", stranger, "--yes")
    nothing = admin("withdraw", "--yes")  # the owner has no balance in the oracle
    not_pending = admin("accept-ownership", "--key-env", stranger, "--yes")

    assert not_owner.code == 1
    assert not_owner.err.strip() == (f"setPaused(paused_=True) would revert, sent from {KEYS.agents.address}: "
                                     f"OwnableUnauthorizedAccount(account={KEYS.agents.address}); "
                                     "nothing was sent")
    assert nothing.code == 1 and "NothingToWithdraw()" in nothing.err
    assert not_pending.code == 1 and "OwnableUnauthorizedAccount" in not_pending.err
    assert "0x" + "118cdaa7" not in not_owner.err  # the name, not the raw selector
    assert admin.w3.eth.block_number == block
    assert admin.oracle.functions.paused().call() is False


def test_bad_admin_inputs_are_named(admin: Admin, bare_chain: Anvil, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    block, sent = admin.w3.eth.block_number, sent_by(admin.w3, KEYS.owner.address)

    labels = admin("set-limits", "--max-choice-labels", "1", "--yes")
    assert (labels.code, labels.err.strip()) == (2, "max_choice_labels: Input should be greater than or equal to 2")
    huge = admin("set-fees", "best", "--base-fee", str(2**96), "--yes")
    assert huge.code == 2 and "base_fee: Input should be less than or equal to" in huge.err
    empty = admin("set-fees", "best", "--yes")
    assert empty.code == 2 and "give at least one of --base-fee" in empty.err
    unknown = oracle_cli(admin.capsys, "admin", "--config", str(admin.path), "--chain", "nowhere", "show")
    assert unknown.code == 2 and "no chain named 'nowhere'" in unknown.err
    monkeypatch.delenv("MISSING_KEY", raising=False)
    missing = admin("pause", "--key-env", "MISSING_KEY", "--yes")
    assert missing.code == 2 and "environment variable MISSING_KEY (a private key) is not set" in missing.err
    unasked = admin("pause")  # no terminal here, and no --yes
    assert unasked.code == 1 and "run again with --yes" in unasked.err
    with pytest.raises(SystemExit):
        admin("set-signer", "0x12", KEYS.bots.address)  # argparse: not an address
    assert "not an address (0x and 40 hex digits): '0x12'" in admin.capsys.readouterr().err

    undeployed = tmp_path / "undeployed.toml"
    undeployed.write_text(config_text(bare_chain, tmp_path))
    no_oracle = oracle_cli(admin.capsys, "admin", "--config", str(undeployed), "--chain", "testnet", "show")
    assert no_oracle.code == 2 and "no oracle address: deploy one with `oracle deploy" in no_oracle.err

    assert (admin.w3.eth.block_number, sent_by(admin.w3, KEYS.owner.address)) == (block, sent)


def test_on_a_terminal_it_asks_and_sends_only_what_is_confirmed(admin: Admin) -> None:
    def answered(answer: bytes) -> subprocess.CompletedProcess[str]:
        controller, terminal = pty.openpty()
        try:
            os.write(controller, answer)  # typed ahead: read when the question is asked
            return subprocess.run([sys.executable, "-m", "oracle", "admin", "--config", str(admin.path), "--chain",
                                   "testnet", "pause"], stdin=terminal, capture_output=True, text=True, timeout=60)
        finally:
            os.close(terminal)
            os.close(controller)

    declined = answered(b"n\n")
    assert declined.returncode == 1 and "send it? [y/N]" in declined.stdout
    assert "not sent (setPaused(paused_=True)): declined" in declined.stderr
    assert admin.oracle.functions.paused().call() is False

    confirmed = answered(b"y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "sent 0x" in confirmed.stdout
    assert admin.oracle.functions.paused().call() is True
