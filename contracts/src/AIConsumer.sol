// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {AIOracle} from "./AIOracle.sol";
import {IAIOracleConsumer} from "./interfaces/IAIOracleConsumer.sol";
import {RequestParams, OffchainResult} from "./OracleTypes.sol";

/// @title AIConsumer
/// @notice Base for contracts that ask the oracle: a request helper that pays the quote, a guard so
/// only the oracle can deliver results, and acceptance of results bought off-chain (each used once).
/// Implement {_onOracleResult}; decode `result` with `abi.decode` for the result type you asked for.
abstract contract AIConsumer is IAIOracleConsumer {
    AIOracle public immutable ORACLE;

    mapping(bytes32 resultId => bool used) public offchainResultUsed;

    error OnlyOracle(address caller);
    error InsufficientPayment(uint256 sent, uint256 quote);
    error WrongConsumer(address consumer);
    error ResultAlreadyUsed(bytes32 resultId);

    event OffchainResultAccepted(bytes32 indexed resultId, address indexed signer);

    constructor(AIOracle oracle) {
        ORACLE = oracle;
    }

    /// @notice Quote the fee for `params` and send the request, paying `payment` (at least the quote).
    /// The callback is this contract.
    function _requestAI(RequestParams memory params, uint256 payment) internal returns (bytes32 requestId) {
        params.callback = address(this);
        uint256 fee = ORACLE.quote(params.modelSpec, params.maxTokens, params.callbackGasLimit);
        if (payment < fee) revert InsufficientPayment(payment, fee);
        return ORACLE.request{value: payment}(params);
    }

    /// @inheritdoc IAIOracleConsumer
    function onOracleResult(
        bytes32 requestId,
        uint8 status,
        uint16 reasonCode,
        bytes calldata result,
        bytes32 modelUsed,
        bytes32 receiptHash
    ) external {
        if (msg.sender != address(ORACLE)) revert OnlyOracle(msg.sender);
        _onOracleResult(requestId, status, reasonCode, result, modelUsed, receiptHash);
    }

    /// @notice Deliver a result bought off-chain (agent API). It must be signed by a signer the oracle
    /// has registered, name this contract, still be valid, and not have been used before.
    function acceptSignedResult(OffchainResult calldata r, bytes calldata signature) external {
        if (r.consumer != address(this)) revert WrongConsumer(r.consumer);
        if (offchainResultUsed[r.resultId]) revert ResultAlreadyUsed(r.resultId);
        address signer = ORACLE.verifyOffchainResult(r, signature);
        offchainResultUsed[r.resultId] = true;
        emit OffchainResultAccepted(r.resultId, signer);
        _onOracleResult(r.resultId, r.status, r.reasonCode, r.result, r.modelUsed, r.receiptHash);
    }

    /// @dev Called with a result from the oracle, or an accepted off-chain result (requestId = resultId).
    function _onOracleResult(
        bytes32 requestId,
        uint8 status,
        uint16 reasonCode,
        bytes calldata result,
        bytes32 modelUsed,
        bytes32 receiptHash
    ) internal virtual;
}
