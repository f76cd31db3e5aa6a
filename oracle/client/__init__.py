"""The client for programs that use the oracle: quote, request, wait for a result, follow every
settlement (`OracleClient.results`), fetch receipts checked against the chain."""

from oracle.client.cursor import CursorMismatch, MemoryCursor, ResultsCursor, SqliteCursor
from oracle.client.oracle_client import ClientError, OracleClient, OracleResult, ReceiptMismatch, describe_revert
from oracle.client.settled import ResultFilter, Retracted, Settled

__all__ = ["ClientError", "CursorMismatch", "MemoryCursor", "OracleClient", "OracleResult", "ReceiptMismatch",
           "ResultFilter", "ResultsCursor", "Retracted", "Settled", "SqliteCursor", "describe_revert"]
