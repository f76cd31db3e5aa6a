"""`oracle keys new|import|address` as a user runs them: keystores that decrypt to the address printed,
never overwritten, keys never printed, and what each bad input gets (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from eth_account import Account

from oracle.devnet.harness import dev_model, write_config

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
KEY_ADDRESS = Account.from_key(KEY).address
WALLET_KEY = bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")


def oracle_keys(*args: str, env: dict[str, str] | None = None, stdin: str = "",
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]  # the checkout whose `oracle` package is tested
    return subprocess.run([sys.executable, "-m", "oracle", "keys", *args], capture_output=True, text=True,
                          input=stdin, timeout=60, env={**os.environ, "PYTHONPATH": str(root), **(env or {})},
                          cwd=cwd)


def refused(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def no_key_in(done: subprocess.CompletedProcess[str], *keys: bytes) -> None:
    for key in keys:
        for text in (done.stdout, done.stderr):
            assert key.hex() not in text.lower()


def test_new_writes_a_private_keystore_that_decrypts_to_the_address_it_prints(tmp_path: Path) -> None:
    path = tmp_path / "signer.json"
    done = oracle_keys("new", "--keystore", str(path), "--password-env", "PW", env={"PW": "correct horse"})
    assert done.returncode == 0, done.stderr
    printed = done.stdout.split("address ")[-1].strip()
    key = bytes(Account.decrypt(json.loads(path.read_text()), "correct horse"))
    assert Account.from_key(key).address == printed
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    no_key_in(done, key)


def test_new_never_overwrites_a_keystore(tmp_path: Path) -> None:
    path = tmp_path / "signer.json"
    path.write_text("an earlier keystore")
    done = oracle_keys("new", "--keystore", str(path), "--password-env", "PW", env={"PW": "pw"})
    refused(done, f"{path} exists: a keystore is never overwritten")
    assert path.read_text() == "an earlier keystore"


def test_import_encrypts_the_key_read_from_stdin(tmp_path: Path) -> None:
    path, password = tmp_path / "wallet.json", tmp_path / "pw.txt"
    password.write_text("from a file\n")
    done = oracle_keys("import", "--keystore", str(path), "--password-file", str(password), stdin="0x" + KEY.hex())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"keystore {path} written: address {KEY_ADDRESS}"
    assert bytes(Account.decrypt(json.loads(path.read_text()), "from a file")) == KEY  # the file's newline dropped
    no_key_in(done, KEY)


def test_import_refuses_what_is_not_a_key_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "wallet.json"
    for given in ("0x1234", "zz" * 32, "00" * 32):
        done = oracle_keys("import", "--keystore", str(path), "--password-env", "PW", env={"PW": "pw"}, stdin=given)
        refused(done, "the key given is not a")
        assert given not in done.stderr and not path.exists()
    refused(oracle_keys("import", "--keystore", str(path), "--password-env", "PW", env={"PW": "pw"}),
            "no key given: pipe the hex key on stdin")


def test_a_password_is_required_and_never_empty(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    refused(oracle_keys("new", "--keystore", str(path)), "no password: give --password-env NAME or --password-file")
    refused(oracle_keys("new", "--keystore", str(path), "--password-env", "UNSET_PW_VAR"),
            "environment variable UNSET_PW_VAR (keystore password) is not set")
    refused(oracle_keys("new", "--keystore", str(path), "--password-env", "PW", env={"PW": ""}),
            "the password is empty")
    refused(oracle_keys("new", "--keystore", str(path), "--password-file", str(tmp_path / "none.txt")),
            f"keystore password file {tmp_path / 'none.txt'}: No such file or directory")
    assert not path.exists()


def test_address_of_a_keystore_needs_no_password(tmp_path: Path) -> None:
    path = tmp_path / "signer.json"
    path.write_text(json.dumps(Account.encrypt(KEY, "pw", iterations=2)))
    done = oracle_keys("address", "--keystore", str(path))
    assert (done.returncode, done.stdout.strip()) == (0, KEY_ADDRESS), done.stderr
    (tmp_path / "not.json").write_text("{not json")
    refused(oracle_keys("address", "--keystore", str(tmp_path / "not.json")), "not a keystore (not JSON)")
    refused(oracle_keys("address", "--keystore", str(tmp_path / "absent.json")), "No such file or directory")


def _config(tmp_path: Path, signer: dict[str, Any]) -> Path:
    config = {
        "store": {"path": str(tmp_path / "oracle.sqlite")},
        "signer": signer,
        "chains": [{"name": "local", "chain_id": 31337, "rpc_url": "http://127.0.0.1:1",
                    "native_price_micro_usd": 3_000 * 10**6}],
        "models": [dev_model("http://127.0.0.1:1/v1")],
        "x402": {"wallet": {"key_env": "WALLET_KEY"}, "max_payment": 1,
                 "networks": [{"network": "eip155:31337", "rpc_url": "http://127.0.0.1:1"}],
                 "budget": {"total": 1, "per_provider": 1, "per_requester": 1}},
    }
    return write_config(config, tmp_path / "config.toml")


def test_address_of_the_configured_keys_loads_them_as_the_daemon_does(tmp_path: Path) -> None:
    keystore, password = tmp_path / "signer.json", tmp_path / "pw.txt"
    keystore.write_text(json.dumps(Account.encrypt(KEY, "right", iterations=2)))
    password.write_text("right")
    config = _config(tmp_path, {"keystore": str(keystore), "password_file": str(password)})
    env = {"WALLET_KEY": WALLET_KEY.hex()}  # a raw key from the environment, 0x optional
    done = oracle_keys("address", "--config", str(config), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"fulfillment signer  {KEY_ADDRESS}  (keystore {keystore})",
        f"payment wallet      {Account.from_key(WALLET_KEY).address}  (environment variable WALLET_KEY)"]
    no_key_in(done, KEY, WALLET_KEY)
    only = oracle_keys("address", "--config", str(config), "--key", "payment", env=env)
    assert only.stdout.strip() == Account.from_key(WALLET_KEY).address


def test_what_a_bad_configured_key_gets(tmp_path: Path) -> None:
    keystore, password = tmp_path / "signer.json", tmp_path / "pw.txt"
    keystore.write_text(json.dumps(Account.encrypt(KEY, "right", iterations=2)))
    password.write_text("wrong")
    config = _config(tmp_path, {"keystore": str(keystore), "password_file": str(password)})
    env = {"WALLET_KEY": "0x" + WALLET_KEY.hex()}
    refused(oracle_keys("address", "--config", str(config), env=env), f"keystore {keystore}: wrong password")
    password.write_text("right")
    refused(oracle_keys("address", "--config", str(config)), "environment variable WALLET_KEY (a private key) is "
                                                             "not set")
    refused(oracle_keys("address", "--config", str(config), env={"WALLET_KEY": "0xnot-a-key"}),
            "environment variable WALLET_KEY is not a hex private key")
    keystore.write_text(json.dumps({"version": 3}))
    refused(oracle_keys("address", "--config", str(config), env=env), "not a keystore (no crypto section")
