"""Paying model providers over x402 from the oracle's own wallet.

`PayingClient` sends a provider call; on HTTP 402 it checks the asked payment against the spending
policy, reserves it in the ledger (budgets under one BEGIN IMMEDIATE), signs an EIP-3009
authorization with the SDK, stores the header, re-sends, and records the settlement answer. The
reconciler resolves payments whose fate is unknown from the token's own records.
"""

from oracle.x402.client import Paid, PaidReply, PayingClient, PaymentContext
from oracle.x402.ledger import Ledger, LedgerInUse
from oracle.x402.wallet import PaymentWallet

__all__ = ["Ledger", "LedgerInUse", "Paid", "PaidReply", "PayingClient", "PaymentContext", "PaymentWallet"]
