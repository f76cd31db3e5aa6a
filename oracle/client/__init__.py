"""The client for programs that use the oracle: quote, request, wait for a result (`OracleClient`)."""

from oracle.client.oracle_client import ClientError, OracleClient, OracleResult, describe_revert

__all__ = ["ClientError", "OracleClient", "OracleResult", "describe_revert"]
