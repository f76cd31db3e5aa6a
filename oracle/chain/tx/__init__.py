"""Getting signed responses on-chain: see manager.py for the parts and how they fit."""

from oracle.chain.tx.batch import ReadyResponse
from oracle.chain.tx.manager import TxManager
from oracle.chain.tx.refusals import Refusal, classify_refusal

__all__ = ["ReadyResponse", "Refusal", "TxManager", "classify_refusal"]
