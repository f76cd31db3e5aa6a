"""The client for programs that use the oracle: quote, request, wait for a result, follow every
settlement (`OracleClient.results`), fetch receipts checked against the chain; buy chat completions and
signed analyses from the gateway over x402 (`GatewayClient`), checked before they are returned."""

from oracle.client.analysis import AnalysisQuery, AnswerRefused, SignedAnalysis, verify_analysis
from oracle.client.cursor import CursorMismatch, MemoryCursor, ResultsCursor, SqliteCursor
from oracle.client.gateway import ChatReply, GatewayAccount, GatewayClient, GatewayError, PaymentDeclined
from oracle.client.oracle_client import OracleClient, OracleResult, ReceiptMismatch
from oracle.client.settled import ResultFilter, Retracted, Settled
from oracle.client.transact import NODE_ERRORS, ClientError, describe_revert, send_call, wait_mined

__all__ = ["NODE_ERRORS", "AnalysisQuery", "AnswerRefused", "ChatReply", "ClientError", "CursorMismatch",
           "GatewayAccount", "GatewayClient", "GatewayError", "MemoryCursor", "OracleClient", "OracleResult",
           "PaymentDeclined", "ReceiptMismatch", "ResultFilter", "ResultsCursor", "Retracted", "Settled",
           "SignedAnalysis", "SqliteCursor", "describe_revert", "send_call", "verify_analysis", "wait_mined"]
