"""The embedded local stack: anvil, the deployed contracts and the dev-key roles.

Used by `oracle dev`, the tests and the benchmarks; nothing below the CLI imports it.
"""

from oracle.devnet.keys import DevKeys
from oracle.devnet.stack import LocalStack

__all__ = ["DevKeys", "LocalStack"]
