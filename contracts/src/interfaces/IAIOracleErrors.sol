// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

/// @title IAIOracleErrors
/// @notice Every custom error the oracle reverts with. {IAIOracle} and {AIConsumer} inherit it, so the ABI
/// a consumer compiles against names these errors and tools decode `FeeBelowQuote(sent, quote)` instead
/// of a bare selector, whether the revert comes from the oracle or bubbles up through a consumer.
interface IAIOracleErrors {
    // ----- errors: requests -----

    error OraclePaused();
    error FeeBelowQuote(uint256 sent, uint256 quote);
    error InvalidCallback();
    error CallbackGasTooHigh(uint256 given, uint256 max);
    error EmptyPrompt();
    error PromptTooLarge(uint256 length, uint256 max);
    error ModelSpecTooLong(uint256 length, uint256 max);
    error InvalidMaxTokens(uint256 given, uint256 max);
    error InvalidTemperature(uint256 given, uint256 max);
    error InvalidDeadline(uint256 deadline, uint256 latest);
    error UnknownResultType(uint8 kind);
    error InvalidResultBounds(uint8 kind);
    error InvalidResultSize(uint256 maxBytes, uint256 limit);
    error InvalidChoiceLabels(uint256 count, uint256 max);
    /// @notice Labels `first` and `again` are the same text; give each label once.
    error DuplicateChoiceLabel(uint256 first, uint256 again);
    error InvalidAbiType();
    error UnusedResultField(uint8 kind);

    // ----- errors: fulfillment (each names the request; a batch reports them as skips) -----

    error UnknownRequest(bytes32 requestId);
    error CommitmentMismatch(bytes32 requestId);
    error RequestExpired(bytes32 requestId);
    error InvalidSignature(bytes32 requestId);
    error UnauthorizedSigner(bytes32 requestId);
    error InvalidStatus(bytes32 requestId);
    error ResultTooLarge(bytes32 requestId);
    error InsufficientGasForCallback(bytes32 requestId);
    error LengthMismatch();
    error BatchTooLarge(uint256 size, uint256 max);

    // ----- errors: other -----

    error NotExpired(bytes32 requestId, uint256 deadline);
    error NotRequester(bytes32 requestId, address caller);
    error NotConsumer(address consumer, address caller);
    error NothingToWithdraw();
    error WithdrawFailed(address to);
    error InvalidPayee();
    error UnknownPolicyClass(uint8 policyClass);
    error InvalidLimits();

    /// @notice The model spec breaks the grammar at byte `offset` ({ModelSpec} checks it).
    error InvalidModelSpec(uint256 offset);
    /// @notice The option whose key starts at byte `offset` repeats an earlier option's key.
    error DuplicateModelSpecOption(uint256 offset);
}
