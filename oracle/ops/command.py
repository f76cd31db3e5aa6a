"""Running an operator's command to an exit code, every failure a message and no traceback."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from oracle.chain.rpc import RpcError, RpcUnavailable
from oracle.config import ConfigError
from oracle.ops import OpsError


def run_command(work: Coroutine[Any, Any, Any]) -> int:
    """0 when `work` completes; 2 for a bad setting or input, 1 for what the chain refused or could not do."""
    try:
        asyncio.run(work)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except OpsError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (RpcError, RpcUnavailable) as exc:
        print(f"the node failed ({exc}); run the command again: it reads what the chain holds and goes on from there",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
