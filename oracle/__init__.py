"""AI oracle: answers on-chain AI requests with signed, typed results."""

__version__ = "0.1.0"
