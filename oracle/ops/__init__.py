"""Operating an oracle contract: `oracle deploy` (deploy it and keep it at the config's settings) and
`oracle admin` (show and change it).

Every change is a transaction from a key named in the config or by an environment variable, never
given on the command line: simulated from that key (a revert is named from the ABI), shown with its
gas and fee, confirmed on a terminal (or `--yes`), sent, and followed to its receipt.

    sys.exit(run_command(deploy_oracle(config, path, "base", confirmation(assume_yes=False))))
"""

from __future__ import annotations


class OpsError(Exception):
    """What the chain or the oracle on it does not allow; the message says what to do."""
