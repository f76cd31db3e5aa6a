// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {
    RequestParams, Commitment, Response, OffchainResult, FeeSchedule, Limits
} from "../OracleTypes.sol";
import {IAIOracleErrors} from "./IAIOracleErrors.sol";

/// @title IAIOracle
/// @notice The coordinator: quote, request, fulfill (signed responses), cancel, withdraw. Its custom
/// errors are declared in {IAIOracleErrors}.
interface IAIOracle is IAIOracleErrors {
    // ----- events -----

    /// @notice A request was made; carries everything needed to answer it, and to cancel it: the
    /// {Commitment} is `requester`, `callback`, `params.callbackGasLimit`, `params.deadline`, the result
    /// bound of `params.result` ({OracleTypes.maxResultBytes}), `fee` and `paramsHash`
    /// (`keccak256(abi.encode(params))`).
    event Requested(
        bytes32 indexed requestId,
        address indexed requester,
        address indexed callback,
        uint64 nonce,
        uint256 fee,
        bytes32 paramsHash,
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
