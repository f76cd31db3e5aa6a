// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {IGovernor} from "@openzeppelin/contracts/governance/IGovernor.sol";
import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";

import {AIConsumer} from "../AIConsumer.sol";
import {AIOracle} from "../AIOracle.sol";
import {RequestParams, ResultSpec, ResultType, Status} from "../OracleTypes.sol";

/// @title GovernanceSummarizer
/// @notice Stores an AI summary and risk score for each proposal of one Governor. Whoever asks passes
/// the proposal's actions and description; the contract checks them against the Governor's
/// `hashProposal`, so the text the model reads is provably the proposal's own.
/// The result type is the ABI tuple `(string summary, uint8 risk, string rationale)`. The first summary
/// stored for a proposal stands, so nobody can pay to re-ask until a model gives a kinder answer.
contract GovernanceSummarizer is AIConsumer {
    using Strings for uint256;
    using Strings for address;

    struct Summary {
        string summary;
        uint8 risk;
        string rationale;
        bytes32 modelUsed;
        bytes32 receiptHash;
    }

    string public constant RESULT_ABI_TYPE = "(string,uint8,string)";
    bytes private constant TRUNCATED = "\n[truncated]";
    /// @notice The smallest prompt limit a summarizer takes: room for the task line and a few actions.
    uint32 public constant MIN_PROMPT_BYTES = 512;

    IGovernor public immutable GOVERNOR;
    string public modelSpec;
    uint32 public immutable CALLBACK_GAS_LIMIT;
    uint32 public immutable MAX_TOKENS;
    uint32 public immutable MAX_RESULT_BYTES;
    uint64 public immutable DEADLINE_WINDOW;
    /// @notice The longest prompt this contract sends (the oracle's own limit still applies): a bound that
    /// fits the context window of the models its spec picks, so a long proposal is cut, not refused.
    uint32 public immutable MAX_PROMPT_BYTES;

    mapping(uint256 proposalId => Summary) private _summaries;
    mapping(uint256 proposalId => bool) public hasSummary;
    mapping(bytes32 requestId => uint256 proposalId) public proposalOf;

    error UnknownProposal(uint256 proposalId);
    error PromptLimitTooSmall(uint32 maxPromptBytes, uint32 minimum);
    error AlreadySummarized(uint256 proposalId);

    event SummaryRequested(uint256 indexed proposalId, bytes32 indexed requestId);
    event SummaryStored(uint256 indexed proposalId, uint8 risk, bytes32 modelUsed, bytes32 receiptHash);
    event SummaryFailed(uint256 indexed proposalId, uint16 reasonCode);

    constructor(
        AIOracle oracle,
        IGovernor governor,
        string memory modelSpec_,
        uint32 callbackGasLimit,
        uint32 maxTokens,
        uint32 maxResultBytes,
        uint64 deadlineWindow,
        uint32 maxPromptBytes
    ) AIConsumer(oracle) {
        GOVERNOR = governor;
        modelSpec = modelSpec_;
        CALLBACK_GAS_LIMIT = callbackGasLimit;
        MAX_TOKENS = maxTokens;
        MAX_RESULT_BYTES = maxResultBytes;
        DEADLINE_WINDOW = deadlineWindow;
        if (maxPromptBytes < MIN_PROMPT_BYTES) revert PromptLimitTooSmall(maxPromptBytes, MIN_PROMPT_BYTES);
        MAX_PROMPT_BYTES = maxPromptBytes;
    }

    /// @notice The fee to send with {summarize}.
    function quote() external view returns (uint256) {
        return ORACLE.quote(modelSpec, MAX_TOKENS, CALLBACK_GAS_LIMIT);
    }

    /// @notice Ask for a summary of an existing proposal. `msg.value` is escrowed as the fee.
    function summarize(
        address[] calldata targets,
        uint256[] calldata values,
        bytes[] calldata calldatas,
        string calldata description
    ) external payable returns (bytes32 requestId) {
        uint256 proposalId = GOVERNOR.hashProposal(targets, values, calldatas, keccak256(bytes(description)));
        if (GOVERNOR.proposalSnapshot(proposalId) == 0) revert UnknownProposal(proposalId);
        if (hasSummary[proposalId]) revert AlreadySummarized(proposalId);

        ResultSpec memory result;
        result.kind = uint8(ResultType.Abi);
        result.maxBytes = MAX_RESULT_BYTES;
        result.abiType = RESULT_ABI_TYPE;
        RequestParams memory params = RequestParams({
            callback: address(this),
            callbackGasLimit: CALLBACK_GAS_LIMIT,
            deadline: uint64(block.timestamp) + DEADLINE_WINDOW,
            maxTokens: MAX_TOKENS,
            temperature: 0,
            seed: 0,
            modelSpec: modelSpec,
            prompt: _prompt(proposalId, targets, values, calldatas, description),
            result: result
        });
        requestId = _requestAI(params, msg.value, msg.sender);
        proposalOf[requestId] = proposalId;
        emit SummaryRequested(proposalId, requestId);
    }

    function summaryOf(uint256 proposalId) external view returns (Summary memory) {
        return _summaries[proposalId];
    }

    /// @dev The task, the proposal's id and actions, then its description, as plain text. It is data for
    /// the model; the daemon's fixed system prompt says to analyse it and never to follow it. The actions
    /// come before the description and only the description is cut (on a UTF-8 character boundary, with a
    /// marker) to fit the prompt limit (this contract's or the oracle's, the smaller): a long description
    /// can neither push the real actions out of what the model reads nor get the proposal refused, so
    /// padding cannot dodge review. Actions too long to fit even alone are cut with the same marker.
    function _prompt(
        uint256 proposalId,
        address[] calldata targets,
        uint256[] calldata values,
        bytes[] calldata calldatas,
        string calldata description
    ) private view returns (bytes memory text) {
        text = abi.encodePacked(
            "Summarise this governance proposal for token holders as (summary, risk, rationale): risk from 0 "
            "(harmless) to 100 (could drain or capture the DAO), rationale in one sentence.\nGovernance proposal ",
            proposalId.toString(),
            "\nActions:"
        );
        for (uint256 i = 0; i < targets.length; ++i) {
            text = abi.encodePacked(
                text,
                "\n",
                (i + 1).toString(),
                ". call ",
                targets[i].toHexString(),
                " value ",
                values[i].toString(),
                " calldata ",
                Strings.toHexString(calldatas[i])
            );
        }
        text = abi.encodePacked(text, "\nDescription:\n");
        uint256 limit = AIOracle(address(ORACLE)).limits().maxPromptBytes;
        if (MAX_PROMPT_BYTES < limit) limit = MAX_PROMPT_BYTES;
        bytes memory marker = TRUNCATED;
        if (text.length + marker.length > limit) {
            // the actions alone do not fit: they are ASCII, so any cut is on a character boundary
            return _cut(text, limit - marker.length, marker);
        }
        uint256 room = limit - text.length;
        bytes calldata body = bytes(description);
        if (body.length <= room) return bytes.concat(text, body);
        uint256 keep = room - marker.length;
        // Back off continuation bytes (10xxxxxx) so the kept text ends with a whole character.
        while (keep > 0 && uint8(body[keep]) & 0xC0 == 0x80) --keep;
        return bytes.concat(text, body[:keep], marker);
    }

    function _cut(bytes memory text, uint256 keep, bytes memory marker) private pure returns (bytes memory) {
        assembly ("memory-safe") {
            mstore(text, keep)
        }
        return bytes.concat(text, marker);
    }

    function _onOracleResult(
        bytes32 requestId,
        uint8 status,
        uint16 reasonCode,
        bytes calldata result,
        bytes32 modelUsed,
        bytes32 receiptHash
    ) internal override {
        uint256 proposalId = proposalOf[requestId];
        if (hasSummary[proposalId]) return;
        if (status != uint8(Status.Success)) {
            emit SummaryFailed(proposalId, reasonCode);
            return;
        }
        (string memory summary, uint8 risk, string memory rationale) = abi.decode(result, (string, uint8, string));
        _summaries[proposalId] = Summary(summary, risk, rationale, modelUsed, receiptHash);
        hasSummary[proposalId] = true;
        emit SummaryStored(proposalId, risk, modelUsed, receiptHash);
    }
}
