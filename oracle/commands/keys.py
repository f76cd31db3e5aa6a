"""`oracle keys`: encrypted keystores (Web3 Secret Storage, v3) for the fulfillment signer and the payment wallet.

    ORACLE_KEY_PASSWORD=... oracle keys new --keystore signer.json --password-env ORACLE_KEY_PASSWORD
    oracle keys import --keystore wallet.json --password-file pw.txt < key.hex
    oracle keys address --keystore signer.json          # or --config config.toml [--key signer|payment]

A key is never taken from the command line (it would stay in the shell's history and in `ps`), never
printed and never written unencrypted; a keystore is created with mode 0600 and never overwritten.
The password comes from an environment variable or a file, the same two ways the config names it, or
is asked for on a terminal.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from eth_account import Account

from oracle.config import (
    ConfigError,
    KeySource,
    keystore_address,
    load_config,
    parse_private_key,
)

_ROLES = {"signer": "fulfillment signer", "payment": "payment wallet"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    for name, summary in (("new", "make a new random key and write it to an encrypted keystore"),
                          ("import", "encrypt an existing hex key (read from stdin, or asked for on a terminal) "
                                     "into a keystore")):
        action = actions.add_parser(name, help=summary)
        action.add_argument("--keystore", type=Path, required=True, help="file to write (refused if it exists)")
        password = action.add_mutually_exclusive_group()
        password.add_argument("--password-env", help="environment variable holding the keystore's password")
        password.add_argument("--password-file", type=Path, help="file holding the keystore's password")
        action.set_defaults(keys_action=name)
    address = actions.add_parser("address", help="print the address of a keystore, or of the keys a config names")
    where = address.add_mutually_exclusive_group(required=True)
    where.add_argument("--keystore", type=Path, help="a keystore file (its address is read without the password)")
    where.add_argument("--config", type=Path, help="the daemon's config: its keys are loaded as `oracle run` does")
    address.add_argument("--key", choices=sorted(_ROLES), help="with --config: only this key's address")
    address.set_defaults(keys_action="address")


def run(args: argparse.Namespace) -> int:
    """0 done, 2 refused (the message says what to change)."""
    try:
        if args.keys_action == "address":
            for line in _addresses(args):
                print(line)
            return 0
        key = os.urandom(32) if args.keys_action == "new" else _key_to_import()
        address = _write_keystore(args.keystore, key, _new_password(args))
    except ConfigError as exc:
        print(f"oracle keys: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print("oracle keys: cancelled, nothing written", file=sys.stderr)
        return 2
    print(f"keystore {args.keystore} written: address {address}")
    return 0


def _addresses(args: argparse.Namespace) -> list[str]:
    if args.keystore is not None:
        if args.key is not None:
            raise ConfigError("--key goes with --config (it picks one of the config's keys)")
        found = keystore_address(args.keystore)
        if found is None:
            raise ConfigError(f"keystore {args.keystore}: declares no address (is it a keystore?); name it in a "
                              "config and use --config to decrypt it")
        return [found]
    config = load_config(args.config)
    sources: dict[str, KeySource] = {"signer": config.signer}
    if config.x402 is not None:
        sources["payment"] = config.x402.wallet
    if args.key is not None:
        if args.key not in sources:
            raise ConfigError(f"config {args.config} has no {_ROLES[args.key]} key (no [x402] wallet)")
        return [Account.from_key(sources[args.key].load()).address]
    return [f"{_ROLES[role]:<20}{Account.from_key(source.load()).address}  ({source.describe()})"
            for role, source in sources.items()]


def _key_to_import() -> bytes:
    raw = getpass.getpass("private key (hex, not shown): ") if sys.stdin.isatty() else sys.stdin.readline()
    if not raw.strip():
        raise ConfigError("no key given: pipe the hex key on stdin (e.g. `< key.hex`) or run on a terminal to be "
                          "asked for it")
    return parse_private_key(raw, "the key given")


def _new_password(args: argparse.Namespace) -> str:
    if args.password_env is not None or args.password_file is not None:
        source = KeySource(keystore=args.keystore, password_env=args.password_env, password_file=args.password_file)
        password = source.password()
    elif sys.stdin.isatty():
        password = getpass.getpass("keystore password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ; nothing written")
    else:
        raise ConfigError("no password: give --password-env NAME or --password-file FILE, or run on a terminal "
                          "to be asked for one")
    if not password:
        raise ConfigError("the password is empty: an empty password protects nothing")
    return password


def _write_keystore(path: Path, key: bytes, password: str) -> str:
    """Encrypt and create the file (mode 0600), never replacing one: a lost keystore is a lost key."""
    document = json.dumps(Account.encrypt(key, password))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists: a keystore is never overwritten (move it away or choose another "
                          "path)") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as out:
        out.write(document)
    return str(Account.from_key(key).address)
