// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {
    RequestParams, Commitment, Response, OffchainResult, FeeSchedule, Limits
} from "../OracleTypes.sol";

/// @title IAIOracle
/// @notice The coordinator: quote, request, fulfill (signed responses), cancel, withdraw.
interface IAIOracle {
    // ----- events -----

    /// @notice A request was made; carries everything needed to answer it.
    event Requested(
        bytes32 indexed requestId,
        address indexed requester,
        address indexed callback,
        uint64 nonce,
        uint256 fee,
        RequestParams params
    );

    /// @notice A request was answered. The fee went to the payee registered for `signer`. The receipt
    /// behind `receiptHash` names the model(s) used and shows how the answer was made.
    event Fulfilled(
        bytes32 indexed requestId,
        address indexed signer,
        uint8 status,
        uint16 reasonCode,
        bytes32 resultHash,
        bytes32 receiptHash,
        bool callbackSuccess
    );

    /// @notice One response of a batch was not applied; `reason` is the selector of the error a
    /// single `fulfill` would have reverted with.
    event FulfillmentSkipped(bytes32 indexed requestId, bytes4 reason);

    /// @notice An expired request's fee was credited back to its requester.
    event Cancelled(bytes32 indexed requestId, address indexed requester, uint256 refund);

    event Withdrawn(address indexed account, address indexed to, uint256 amount);
    event SignerSet(address indexed signer, address indexed payee);
    event SignerRemoved(address indexed signer);
    event FeeScheduleSet(uint8 indexed policyClass, FeeSchedule schedule);
    event LimitsSet(Limits limits);
    event PausedSet(bool paused);

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

    // ----- functions -----

    function quote(string calldata modelSpec, uint32 maxTokens, uint32 callbackGasLimit)
        external
        view
        returns (uint256);

    function request(RequestParams calldata params) external payable returns (bytes32 requestId);

    function fulfill(Response calldata response, Commitment calldata commitment, bytes calldata signature)
        external;

    function fulfillBatch(
        Response[] calldata responses,
        Commitment[] calldata commitments,
        bytes[] calldata signatures
    ) external returns (uint256 fulfilled);

    function cancel(bytes32 requestId, Commitment calldata commitment) external;

    function withdraw(address payable to) external;

    function verifyOffchainResult(OffchainResult calldata result, bytes calldata signature)
        external
        view
        returns (address signer);
}
