// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

import {AIConsumer} from "../AIConsumer.sol";
import {AIOracle} from "../AIOracle.sol";
import {ExampleVault} from "./ExampleVault.sol";
import {RequestParams, ResultSpec, ResultType, Status} from "../OracleTypes.sol";

/// @title RiskSentinel
/// @notice Asks the oracle for a 0..100 risk score of a vault's situation and pauses the vault when
/// the score reaches `pauseThreshold`. Only the owner (a keeper) may ask, since whoever writes the
/// prompt influences the score.
contract RiskSentinel is AIConsumer, Ownable {
    ExampleVault public immutable VAULT;
    string public modelSpec;
    uint8 public pauseThreshold;
    uint32 public constant CALLBACK_GAS_LIMIT = 100_000;
    uint32 public constant MAX_TOKENS = 64;
    uint64 public constant DEADLINE_WINDOW = 1 hours;

    uint256 public lastScore;
    bytes32 public lastRequestId;

    error InvalidThreshold(uint8 threshold);

    event RiskScored(bytes32 indexed requestId, uint256 score, bytes32 receiptHash);
    event RiskCheckFailed(bytes32 indexed requestId, uint16 reasonCode);
    event VaultPaused(bytes32 indexed requestId, uint256 score);
    event ThresholdSet(uint8 threshold);

    constructor(AIOracle oracle, ExampleVault vault, string memory modelSpec_, uint8 threshold, address owner_)
        AIConsumer(oracle)
        Ownable(owner_)
    {
        VAULT = vault;
        modelSpec = modelSpec_;
        _setThreshold(threshold);
    }

    function setThreshold(uint8 threshold) external onlyOwner {
        _setThreshold(threshold);
    }

    function quote() external view returns (uint256) {
        return ORACLE.quote(modelSpec, MAX_TOKENS, CALLBACK_GAS_LIMIT);
    }

    /// @notice Ask for a risk score of `context` (market data, positions, news). `msg.value` is the fee.
    function requestRiskCheck(bytes calldata context) external payable onlyOwner returns (bytes32 requestId) {
        ResultSpec memory result;
        result.kind = uint8(ResultType.Uint);
        result.min = 0;
        result.max = 100;
        requestId = _requestAI(
            RequestParams({
                callback: address(this),
                callbackGasLimit: CALLBACK_GAS_LIMIT,
                deadline: uint64(block.timestamp) + DEADLINE_WINDOW,
                maxTokens: MAX_TOKENS,
                temperature: 0,
                seed: 0,
                modelSpec: modelSpec,
                prompt: context,
                result: result
            }),
            msg.value,
            msg.sender
        );
        lastRequestId = requestId;
    }

    function _onOracleResult(
        bytes32 requestId,
        uint8 status,
        uint16 reasonCode,
        bytes calldata result,
        bytes32,
        bytes32 receiptHash
    ) internal override {
        // Only the latest check counts: an older answer arriving late must not overrule a newer one.
        if (requestId != lastRequestId) return;
        if (status != uint8(Status.Success)) {
            emit RiskCheckFailed(requestId, reasonCode);
            return;
        }
        uint256 score = abi.decode(result, (uint256));
        lastScore = score;
        emit RiskScored(requestId, score, receiptHash);
        if (score >= pauseThreshold && !VAULT.paused()) {
            VAULT.pause();
            emit VaultPaused(requestId, score);
        }
    }

    function _setThreshold(uint8 threshold) private {
        if (threshold == 0 || threshold > 100) revert InvalidThreshold(threshold);
        pauseThreshold = threshold;
        emit ThresholdSet(threshold);
    }
}
