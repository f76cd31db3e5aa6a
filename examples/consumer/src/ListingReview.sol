// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {AIConsumer} from "ai-oracle/AIConsumer.sol";
import {AIOracle} from "ai-oracle/AIOracle.sol";
import {RequestParams, ResultSpec, ResultType, Status} from "ai-oracle/OracleTypes.sol";

/// @title ListingReview
/// @notice Asks the oracle three kinds of question about a token listing and keeps each answer: is it
/// legitimate (a bool), how risky is it from 0 to 100 (a bounded uint), and which tier does it belong
/// in (a choice among "reject", "watch", "list"). Whoever asks pays the fee; if nobody answers before
/// the deadline, the fee goes back to them through {AIConsumer.reclaimFee}.
contract ListingReview is AIConsumer {
    enum Question {
        Legitimate,
        Risk,
        Tier
    }

    struct Review {
        Question question;
        bool answered;
        uint8 status; // Status.Success or Status.Failure
        uint16 reasonCode; // a ReasonCode, None on success
        uint256 value; // Legitimate: 1 or 0; Risk: 0..MAX_RISK; Tier: an index into tiers()
    }

    uint32 public constant CALLBACK_GAS_LIMIT = 100_000;
    uint32 public constant MAX_TOKENS = 32;
    uint256 public constant MAX_RISK = 100;

    /// @notice The model spec every question is asked with, e.g. "cheapest;max_price=20000".
    string public modelSpec;
    /// @notice Seconds each question stays open before its fee can be reclaimed.
    uint64 public immutable ANSWER_WITHIN;

    mapping(bytes32 requestId => Review) public reviews;

    event Asked(bytes32 indexed requestId, Question question, address indexed payer);
    event Reviewed(bytes32 indexed requestId, Question question, uint8 status, uint16 reasonCode, uint256 value);

    constructor(AIOracle oracle, string memory modelSpec_, uint64 answerWithin) AIConsumer(oracle) {
        modelSpec = modelSpec_;
        ANSWER_WITHIN = answerWithin;
    }

    /// @notice The fee one question costs; send at least this much with each ask.
    function quote() public view returns (uint256) {
        return ORACLE.quote(modelSpec, MAX_TOKENS, CALLBACK_GAS_LIMIT);
    }

    /// @notice The labels of the tier question; its answer is an index into them.
    function tiers() public pure returns (string[] memory labels) {
        labels = new string[](3);
        labels[0] = "reject";
        labels[1] = "watch";
        labels[2] = "list";
    }

    function askLegitimate(string calldata listing) external payable returns (bytes32) {
        return _ask(Question.Legitimate, "Does this token listing look legitimate? ", listing);
    }

    function askRisk(string calldata listing) external payable returns (bytes32) {
        return _ask(Question.Risk, "Rate the risk of this token listing from 0 (none) to 100 (certain loss): ", listing);
    }

    function askTier(string calldata listing) external payable returns (bytes32) {
        return _ask(Question.Tier, "Should this token listing be rejected, watched or listed? ", listing);
    }

    function _ask(Question question, string memory lead, string calldata listing) private returns (bytes32 id) {
        ResultSpec memory result;
        if (question == Question.Legitimate) {
            result.kind = uint8(ResultType.Bool);
        } else if (question == Question.Risk) {
            result.kind = uint8(ResultType.Uint);
            result.max = MAX_RISK; // min stays 0
        } else {
            result.kind = uint8(ResultType.Choice);
            result.labels = tiers();
        }
        RequestParams memory params = RequestParams({
            callback: address(this), // _requestAI sets it anyway
            callbackGasLimit: CALLBACK_GAS_LIMIT,
            deadline: uint64(block.timestamp) + ANSWER_WITHIN,
            maxTokens: MAX_TOKENS,
            temperature: 0,
            seed: 0,
            modelSpec: modelSpec,
            prompt: bytes(string.concat(lead, listing)), // the listing is data for the model, never instructions
            result: result
        });
        id = _requestAI(params, msg.value, msg.sender);
        reviews[id].question = question;
        emit Asked(id, question, msg.sender);
    }

    /// @dev Only the oracle gets here, and only for a request this contract made (AIConsumer checks).
    function _onOracleResult(bytes32 requestId, uint8 status, uint16 reasonCode, bytes calldata result, bytes32, bytes32)
        internal
        override
    {
        Review storage review = reviews[requestId];
        review.answered = true;
        review.status = status;
        review.reasonCode = reasonCode;
        if (status == uint8(Status.Success)) {
            if (review.question == Question.Legitimate) {
                review.value = abi.decode(result, (bool)) ? 1 : 0;
            } else {
                review.value = abi.decode(result, (uint256)); // within [0, MAX_RISK], or an index into tiers()
            }
        }
        emit Reviewed(requestId, review.question, status, reasonCode, review.value);
    }
}
