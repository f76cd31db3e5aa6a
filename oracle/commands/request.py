"""`oracle request`: send one request of any result type from a key, wait for what settles it, print it.

    ORACLE_REQUESTER_KEY=0x... oracle request --config config.toml --prompt "Is ETH above 3000?" --type bool

The callback defaults to the sender's own address: an address without code gets no call, and the answer
is read back from the fulfilment (the oracle accepts any callback; a contract of yours can be named with
`--callback` and `--callback-gas`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
from eth_account import Account
from web3.exceptions import Web3Exception

from oracle.client import ClientError, OracleClient, OracleResult
from oracle.commands.arguments import address, amount, seconds, unsigned
from oracle.config import ChainSettings, ConfigError, key_from_env, load_config
from oracle.protocol import RequestParams, ResultSpec, ResultType

DEFAULT_KEY_ENV = "ORACLE_REQUESTER_KEY"
_SIZED = {ResultType.TEXT, ResultType.JSON, ResultType.ABI}


class UsageError(ValueError):
    """A command-line value that cannot make a request; the message says which and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the daemon's TOML config (the chain's RPC and oracle)")
    parser.add_argument("--chain", help="the chain's name in the config (default: its only chain)")
    parser.add_argument("--key-env", default=DEFAULT_KEY_ENV,
                        help=f"environment variable holding the requester's private key (default {DEFAULT_KEY_ENV})")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="the question, as text")
    prompt.add_argument("--prompt-file", type=Path, help="read the question from this file (UTF-8)")
    parser.add_argument("--model", default="cheapest",
                        help="model spec: an exact model id, a fallback list a,b, cheapest, fastest, best, "
                             "ensemble:k, with options such as ';max_price=20000' (default cheapest)")
    parser.add_argument("--type", default="text", choices=[t.name.lower() for t in ResultType],
                        help="result type (default text)")
    parser.add_argument("--max-bytes", type=unsigned(32), default=256,
                        help="longest text/json/abi result (default 256)")
    parser.add_argument("--min", type=int, help="lowest value of a uint/int result")
    parser.add_argument("--max", type=int, help="highest value of a uint/int result")
    parser.add_argument("--label", action="append", default=[], help="a choice label (give 2 or more)")
    parser.add_argument("--abi-type", help="tuple type of an abi result, e.g. '(string,uint8)'")
    parser.add_argument("--max-tokens", type=unsigned(32), default=256)
    parser.add_argument("--temperature", type=unsigned(16), default=0, help="in thousandths: 700 means 0.7")
    parser.add_argument("--seed", type=unsigned(64), default=0)
    parser.add_argument("--callback", type=address,
                        help="contract called with the result (default: the sender, no call)")
    parser.add_argument("--callback-gas", type=unsigned(32), default=0, help="gas the callback is given (default 0)")
    parser.add_argument("--deadline-in", type=unsigned(32), default=600,
                        help="seconds until the deadline (default 600)")
    parser.add_argument("--fee", type=amount, help="fee in wei (default: the oracle's quote)")
    parser.add_argument("--timeout", type=seconds, default=300.0, help="seconds to wait for the result")
    parser.add_argument("--no-wait", action="store_true", help="print the request id and exit")


def result_spec(args: argparse.Namespace) -> ResultSpec:
    kind = ResultType[args.type.upper()]
    if kind not in (ResultType.UINT, ResultType.INT) and (args.min is not None or args.max is not None):
        raise UsageError(f"--min/--max apply to uint and int results, not {args.type}")
    if kind != ResultType.CHOICE and args.label:
        raise UsageError(f"--label applies to choice results, not {args.type}")
    if kind != ResultType.ABI and args.abi_type:
        raise UsageError(f"--abi-type applies to abi results, not {args.type}")
    max_bytes = args.max_bytes if kind in _SIZED else 0
    if kind in (ResultType.UINT, ResultType.INT):
        if args.min is None or args.max is None:
            raise UsageError(f"a {args.type} result needs --min and --max")
        if args.min > args.max:
            raise UsageError(f"--min {args.min} is above --max {args.max}")
        if kind == ResultType.UINT and args.min < 0:
            raise UsageError("a uint result cannot have a negative --min: use --type int")
        return ResultSpec(kind, 0, args.min, args.max)
    if kind == ResultType.CHOICE:
        if len(args.label) < 2:
            raise UsageError("a choice result needs at least two --label values")
        return ResultSpec(kind, labels=tuple(args.label))
    if kind == ResultType.ABI:
        if not args.abi_type:
            raise UsageError("an abi result needs --abi-type, e.g. '(string,uint8)'")
        return ResultSpec(kind, max_bytes, abi_type=args.abi_type)
    return ResultSpec(kind, max_bytes)


def _prompt(args: argparse.Namespace) -> bytes:
    if args.prompt_file is None:
        return str(args.prompt).encode()
    try:
        return Path(args.prompt_file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --prompt-file {args.prompt_file}: {exc.strerror}") from None


def show(result: OracleResult, spec: ResultSpec, out: Callable[[str], None] = print) -> None:
    out(f"status    {result.status}")
    if result.status == "failure":
        reason = result.reason
        out(f"reason    {getattr(reason, 'name', reason)} ({int(reason)})")
    if result.value is not None:
        label = ""
        if spec.kind == ResultType.CHOICE and isinstance(result.value, int) and result.value < len(spec.labels):
            label = f" ({spec.labels[result.value]!r})"
        out(f"value     {result.value!r}{label}")
    if result.model_used is not None:
        out(f"model     0x{result.model_used.hex()} (keccak of the model id; the receipt names it)")
    if result.receipt_hash is not None:
        out(f"receipt   0x{result.receipt_hash.hex()}")
    if result.transaction is not None:
        out(f"tx        0x{result.transaction.hex()} (block {result.block_number})")
    if result.note:
        out(f"note      {result.note}")


async def _run(args: argparse.Namespace, chain: ChainSettings, key: bytes, prompt: bytes, spec: ResultSpec) -> int:
    client = await OracleClient.connect(chain.rpc_url, oracle=chain.oracle, timeout=chain.rpc_timeout)
    try:
        sender = Account.from_key(key).address
        head = await client.w3.eth.get_block("latest")
        params = RequestParams(
            callback=args.callback or sender, callback_gas_limit=args.callback_gas,
            deadline=int(head["timestamp"]) + args.deadline_in, max_tokens=args.max_tokens,
            temperature=args.temperature, seed=args.seed, model_spec=args.model, prompt=prompt, result=spec)
        fee = args.fee if args.fee is not None else await client.quote(args.model, args.max_tokens, args.callback_gas)
        request_id = await client.request(params, key, fee)
        if args.no_wait:
            print(f"0x{request_id.hex()}")
            return 0
        print(f"request   0x{request_id.hex()} (fee {fee} wei, from {sender}); waiting for the result")
        result = await client.wait(request_id, timeout=args.timeout)
        show(result, spec)
        return 0 if result.status == "success" else 1
    finally:
        await client.close()


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.config))
        _, chain = config.chain_named(args.chain)
        spec = result_spec(args)
        key = key_from_env(args.key_env, "the requester's private key")
        prompt = _prompt(args)
        return asyncio.run(_run(args, chain, key, prompt, spec))
    except (ConfigError, UsageError, ClientError) as exc:
        print(f"oracle request: {exc}", file=sys.stderr)
        return 2
    except TimeoutError as exc:
        print(f"oracle request: {exc}", file=sys.stderr)
        return 1
    except (Web3Exception, aiohttp.ClientError, OSError) as exc:  # the node refused or dropped a call
        print(f"oracle request: the node could not complete it ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
