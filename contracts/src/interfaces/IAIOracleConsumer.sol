// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

/// @title IAIOracleConsumer
/// @notice What the oracle calls back with exactly the gas the request asked for.
interface IAIOracleConsumer {
    /// @param status `Status.Success` (1) or `Status.Failure` (2)
    /// @param reasonCode a `ReasonCode`; `None` on success
    /// @param result ABI-encoded typed value on success (decode with `abi.decode`), empty on failure
    /// @param modelUsed keccak256 of the model id (or of the sorted ids of an ensemble)
    /// @param receiptHash keccak256 of the receipt that shows how the answer was made
    function onOracleResult(
        bytes32 requestId,
        uint8 status,
        uint16 reasonCode,
        bytes calldata result,
        bytes32 modelUsed,
        bytes32 receiptHash
    ) external;
}
