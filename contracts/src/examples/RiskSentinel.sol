// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

import {AIConsumer} from "../AIConsumer.sol";
import {AIOracle} from "../AIOracle.sol";
import {ExampleVault} from "./ExampleVault.sol";
import {RequestParams, ResultSpec, ResultType, Status, OffchainResult} from "../OracleTypes.sol";

/// @title RiskSentinel
/// @notice Asks the oracle for a 0..100 risk score of a vault's situation and pauses the vault when
/// the score reaches `pauseThreshold`. Only the owner (a keeper) may ask, since whoever writes the
/// prompt influences the score.
///
/// It also takes scores bought off-chain (agent API) through {acceptSignedResult}, from anyone, but only
/// for a question its owner registered with {registerQuery}: the same context, model spec and 0..100
/// bounds {requestRiskCheck} would send.
///
/// Ordering: scores are taken newest first. On-chain, only the latest request's answer counts. An
/// off-chain answer carries no signing time, only `validUntil`, which the seller sets at signing time
/// plus its validity window; with that window at most {offchainValidity}, `validUntil - offchainValidity`
/// is a time the answer was signed no earlier than. An off-chain answer is refused when that time is
/// before the latest recorded score ({lastScoredAt}), so one signed before a newer score never
/// overrules it, and when `validUntil` is further ahead than {offchainValidity} (the seller signs for
/// longer than this contract assumes). Set {offchainValidity} to the seller's window: a larger one only
/// refuses more fresh answers, a smaller one is caught by that second check. An on-chain answer to the
/// latest request is always recorded, being made after that request was sent.
contract RiskSentinel is AIConsumer, Ownable {
    ExampleVault public immutable VAULT;
    string public modelSpec;
    uint8 public pauseThreshold;
    uint32 public constant CALLBACK_GAS_LIMIT = 100_000;
    uint32 public constant MAX_TOKENS = 64;
    uint64 public constant DEADLINE_WINDOW = 1 hours;
    uint256 public constant MAX_SCORE = 100;

    uint256 public lastScore;
    bytes32 public lastRequestId;
    /// @notice When the latest score was recorded: the block time of an on-chain answer, or the time an
    /// off-chain answer was signed no earlier than (`validUntil - offchainValidity`).
    uint64 public lastScoredAt;
    /// @notice The longest validity a seller gives an off-chain answer (see the ordering rule above).
    uint64 public offchainValidity = 5 minutes;
    /// @notice Questions whose off-chain answers this contract takes ({registerQuery}).
    mapping(bytes32 queryHash => bool registered) public registeredQuery;

    error InvalidThreshold(uint8 threshold);
    error InvalidOffchainValidity(uint64 validity);
    /// @notice A score above {MAX_SCORE}: not an answer to the question asked.
    error ScoreOutOfRange(uint256 score);
    /// @notice The answer may have been signed before the latest score ({lastScoredAt}); buy a fresh one.
    error StaleOffchainResult(bytes32 resultId, uint64 signedNoEarlierThan, uint64 lastScoredAt);
    /// @notice The answer stays valid for longer than {offchainValidity}; raise it to the seller's window.
    error ValidityTooLong(bytes32 resultId, uint64 validUntil, uint64 latestAllowed);

    /// @notice `requestId` names the answer: an on-chain request's id, or an off-chain answer's `resultId`
    /// (likewise in {RiskCheckFailed} and {VaultPaused}).
    event RiskScored(bytes32 indexed requestId, uint256 score, bytes32 receiptHash);
    event RiskCheckFailed(bytes32 indexed requestId, uint16 reasonCode);
    event VaultPaused(bytes32 indexed requestId, uint256 score);
    event ThresholdSet(uint8 threshold);
    event QueryRegistered(bytes32 indexed queryHash, bytes context);
    event QueryUnregistered(bytes32 indexed queryHash);
    event OffchainValiditySet(uint64 validity);

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

    /// @notice Set the longest validity a seller gives an off-chain answer (seconds, not zero).
    function setOffchainValidity(uint64 validity) external onlyOwner {
        if (validity == 0) revert InvalidOffchainValidity(validity);
        offchainValidity = validity;
        emit OffchainValiditySet(validity);
    }

    /// @notice Take off-chain answers to the risk check of `context`, the question
    /// `requestRiskCheck(context)` asks. Returns its query hash, the one a seller signs.
    function registerQuery(bytes calldata context) external onlyOwner returns (bytes32 hash) {
        hash = riskQueryHash(context);
        registeredQuery[hash] = true;
        emit QueryRegistered(hash, context);
    }

    /// @notice Stop taking off-chain answers to a registered question.
    function unregisterQuery(bytes32 hash) external onlyOwner {
        if (!registeredQuery[hash]) revert UnexpectedQuery(hash);
        delete registeredQuery[hash];
        emit QueryUnregistered(hash);
    }

    /// @notice The query hash of the risk check of `context` with this sentinel's model spec and bounds.
    function riskQueryHash(bytes calldata context) public view returns (bytes32) {
        return queryHash(modelSpec, context, _scoreSpec());
    }

    function quote() external view returns (uint256) {
        return ORACLE.quote(modelSpec, MAX_TOKENS, CALLBACK_GAS_LIMIT);
    }

    /// @notice Ask for a risk score of `context` (market data, positions, news). `msg.value` is the fee.
    function requestRiskCheck(bytes calldata context) external payable onlyOwner returns (bytes32 requestId) {
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
                result: _scoreSpec()
            }),
            msg.value,
            msg.sender
        );
        lastRequestId = requestId;
    }

    /// @dev A score above {MAX_SCORE} reverts ({ScoreOutOfRange}); the oracle records a failed callback.
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
        _record(requestId, abi.decode(result, (uint256)), receiptHash, uint64(block.timestamp));
    }

    /// @dev A registered question's answer, signed off-chain: a failure is reported like an on-chain one
    /// ({RiskCheckFailed}, nothing else changes); a score is recorded under the ordering rule above.
    /// Events name the answer by its `resultId`.
    function _acceptOffchainResult(OffchainResult calldata r) internal override {
        if (!registeredQuery[r.queryHash]) revert UnexpectedQuery(r.queryHash);
        if (r.status != uint8(Status.Success)) {
            emit RiskCheckFailed(r.resultId, r.reasonCode);
            return;
        }
        uint64 validity = offchainValidity;
        uint64 latestAllowed = uint64(block.timestamp) + validity;
        if (r.validUntil > latestAllowed) revert ValidityTooLong(r.resultId, r.validUntil, latestAllowed);
        uint64 signedNoEarlierThan = r.validUntil > validity ? r.validUntil - validity : 0;
        if (signedNoEarlierThan < lastScoredAt) {
            revert StaleOffchainResult(r.resultId, signedNoEarlierThan, lastScoredAt);
        }
        _record(r.resultId, abi.decode(r.result, (uint256)), r.receiptHash, signedNoEarlierThan);
    }

    function _record(bytes32 id, uint256 score, bytes32 receiptHash, uint64 scoredAt) private {
        if (score > MAX_SCORE) revert ScoreOutOfRange(score);
        lastScore = score;
        lastScoredAt = scoredAt;
        emit RiskScored(id, score, receiptHash);
        if (score >= pauseThreshold && !VAULT.paused()) {
            VAULT.pause();
            emit VaultPaused(id, score);
        }
    }

    function _scoreSpec() private pure returns (ResultSpec memory result) {
        result.kind = uint8(ResultType.Uint);
        result.max = MAX_SCORE;
    }

    function _setThreshold(uint8 threshold) private {
        if (threshold == 0 || threshold > 100) revert InvalidThreshold(threshold);
        pauseThreshold = threshold;
        emit ThresholdSet(threshold);
    }
}
