// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

import {IAIOracle} from "./interfaces/IAIOracle.sol";
import {IAIOracleConsumer} from "./interfaces/IAIOracleConsumer.sol";
import {ModelSpec} from "./ModelSpec.sol";
import {
    OracleTypes,
    RequestParams,
    ResultSpec,
    ResultType,
    Commitment,
    Response,
    OffchainResult,
    FeeSchedule,
    Limits,
    PolicyClass,
    Status,
    ReasonCode
} from "./OracleTypes.sol";

/// @title AIOracle
/// @notice Coordinator of AI requests on one chain. A requester pays the quoted fee and emits one
/// event with everything the daemon needs; the daemon answers with an EIP-712 response signed by a
/// registered signer; anyone may relay it. The fee goes to the payee registered for the signer, the
/// consumer is called with exactly the gas it asked for, and each request settles at most once:
/// fulfilled before its deadline, or refunded after it.
/// @dev Only a commitment (hash of {Commitment}) is stored per request. It is deleted before the
/// callback, so neither re-entry nor a second relay can settle a request twice.
contract AIOracle is IAIOracle, EIP712, Ownable2Step {
    /// @notice EIP-712 type hashes, exposed so off-chain signers can check they agree.
    bytes32 public constant RESPONSE_TYPEHASH = OracleTypes.RESPONSE_TYPEHASH;
    bytes32 public constant OFFCHAIN_RESULT_TYPEHASH = OracleTypes.OFFCHAIN_RESULT_TYPEHASH;

    /// @notice Most responses in one {fulfillBatch}.
    uint256 public constant MAX_BATCH = 64;

    /// @dev Gas held back around the callback: the CALL's own cost and what the oracle needs after it.
    /// With the EIP-150 rule (a call gets at most 63/64 of what is left) this guarantees the consumer
    /// receives its full `callbackGasLimit` or the whole fulfillment reverts.
    uint256 internal constant GAS_FOR_CALL_EXACT_CHECK = 5_000;

    /// @dev Limits and the pause flag share one slot: fulfill reads it once.
    struct Config {
        uint32 maxCallbackGas;
        uint32 maxPromptBytes;
        uint32 maxResultBytes;
        uint32 maxTokens;
        uint32 maxDeadlineWindow;
        uint16 maxModelSpecBytes;
        uint8 maxChoiceLabels;
        bool paused;
    }

    Config private _config;
    FeeSchedule[5] private _fees;

    /// @notice Commitment hash of each open request; zero once fulfilled or cancelled.
    mapping(bytes32 requestId => bytes32 commitment) public commitments;
    /// @notice Next nonce of each requester.
    mapping(address requester => uint64 nonce) public nonces;
    /// @notice Payee credited for responses signed by a registered signer; zero if not registered.
    mapping(address signer => address payee) public payeeOf;
    /// @notice Withdrawable balances: payees' fees and requesters' refunds.
    mapping(address account => uint256 amount) public balanceOf;

    constructor(address initialOwner, Limits memory initialLimits)
        EIP712(OracleTypes.EIP712_NAME, OracleTypes.EIP712_VERSION)
        Ownable(initialOwner)
    {
        _setLimits(initialLimits);
    }

    // ------------------------------------------------------------------ requests

    /// @inheritdoc IAIOracle
    /// @dev Reverts with {InvalidModelSpec} or {ModelSpecTooLong} for a spec no daemon could read.
    function quote(string calldata modelSpec, uint32 maxTokens, uint32 callbackGasLimit)
        public
        view
        returns (uint256)
    {
        uint256 maxSpec = _config.maxModelSpecBytes;
        if (bytes(modelSpec).length > maxSpec) revert ModelSpecTooLong(bytes(modelSpec).length, maxSpec);
        (PolicyClass cls, uint256 k) = ModelSpec.parse(bytes(modelSpec));
        FeeSchedule memory f = _fees[uint8(cls)];
        return k * (uint256(f.baseFee) + uint256(f.perOutputToken) * maxTokens)
            + uint256(f.perCallbackGas) * callbackGasLimit;
    }

    /// @inheritdoc IAIOracle
    /// @notice Escrows `msg.value` (at least the quote) until the request is fulfilled or cancelled.
    function request(RequestParams calldata params) external payable returns (bytes32 requestId) {
        Config memory cfg = _config;
        if (cfg.paused) revert OraclePaused();
        _validateRequest(params, cfg);
        uint256 fee = quote(params.modelSpec, params.maxTokens, params.callbackGasLimit);
        if (msg.value < fee) revert FeeBelowQuote(msg.value, fee);

        uint64 nonce = nonces[msg.sender]++;
        requestId = OracleTypes.requestId(block.chainid, address(this), msg.sender, nonce);
        bytes32 paramsHash = OracleTypes.paramsHash(params);
        commitments[requestId] = keccak256(
            abi.encode(
                Commitment({
                    requester: msg.sender,
                    callback: params.callback,
                    callbackGasLimit: params.callbackGasLimit,
                    deadline: params.deadline,
                    maxResultBytes: OracleTypes.maxResultBytes(params.result),
                    fee: msg.value,
                    paramsHash: paramsHash
                })
            )
        );
        // The params hash travels in the event so a requester can rebuild the commitment to cancel
        // without hashing the params itself.
        emit Requested(requestId, msg.sender, params.callback, nonce, msg.value, paramsHash, params);
    }

    // ------------------------------------------------------------------ fulfillment

    /// @inheritdoc IAIOracle
    /// @notice Applies one signed response. Reverts with the error that names what was wrong.
    function fulfill(Response calldata response, Commitment calldata commitment, bytes calldata signature)
        external
    {
        if (_config.paused) revert OraclePaused();
        bytes4 err = _fulfill(response, commitment, signature);
        if (err != bytes4(0)) _revertFor(err, response.requestId);
    }

    /// @inheritdoc IAIOracle
    /// @notice Applies several signed responses. One that cannot be applied (already settled by someone
    /// else, expired, badly signed) is skipped with {FulfillmentSkipped}, so it cannot sink the rest.
    /// Too little gas for a callback still reverts the whole batch ({InsufficientGasForCallback}):
    /// send at least the sum of the callback gas limits plus the per-response overhead.
    /// @return fulfilled how many responses were applied
    function fulfillBatch(
        Response[] calldata responses,
        Commitment[] calldata commitments_,
        bytes[] calldata signatures
    ) external returns (uint256 fulfilled) {
        if (_config.paused) revert OraclePaused();
        uint256 n = responses.length;
        if (commitments_.length != n || signatures.length != n) revert LengthMismatch();
        if (n > MAX_BATCH) revert BatchTooLarge(n, MAX_BATCH);
        uint256 freeMemory;
        assembly ("memory-safe") {
            freeMemory := mload(0x40)
        }
        for (uint256 i = 0; i < n; ++i) {
            bytes4 err = _fulfill(responses[i], commitments_[i], signatures[i]);
            // Nothing an item leaves in memory is needed afterwards: reuse it, so a batch's memory (and
            // its quadratic cost) stays the size of one item.
            assembly ("memory-safe") {
                mstore(0x40, freeMemory)
            }
            if (err == bytes4(0)) {
                ++fulfilled;
            } else {
                emit FulfillmentSkipped(responses[i].requestId, err);
            }
        }
    }

    /// @dev Returns the selector of the error that stops the response, or zero once it is applied.
    /// The result is bounded by the request's own size, which its commitment carries.
    function _fulfill(Response calldata r, Commitment calldata c, bytes calldata signature) private returns (bytes4) {
        bytes32 id = r.requestId;
        {
            bytes32 stored = commitments[id];
            if (stored == bytes32(0)) return UnknownRequest.selector;
            bytes32 expected = OracleTypes.commitmentHash(c);
            if (stored != expected || r.commitment != expected) return CommitmentMismatch.selector;
        }
        if (block.timestamp > c.deadline) return RequestExpired.selector;
        if (!_statusConsistent(r)) return InvalidStatus.selector;
        if (r.result.length > c.maxResultBytes) return ResultTooLarge.selector;

        bytes32 resultHash = keccak256(r.result);
        (address signer, bytes4 signerError) = _signerOf(r, resultHash, signature);
        if (signerError != bytes4(0)) return signerError;

        // Effects before the callback: the request can never be settled again, even by re-entry.
        delete commitments[id];
        balanceOf[payeeOf[signer]] += c.fee;

        _emitFulfilled(r, signer, resultHash, _callConsumer(r, c));
        return bytes4(0);
    }

    function _emitFulfilled(Response calldata r, address signer, bytes32 resultHash, bool callbackSuccess) private {
        emit Fulfilled(
            r.requestId, signer, r.status, r.reasonCode, resultHash, r.receiptHash, callbackSuccess
        );
    }

    /// @dev The registered signer of a response, or the selector of the error that rejects it.
    function _signerOf(Response calldata r, bytes32 resultHash, bytes calldata signature)
        private
        view
        returns (address signer, bytes4 err)
    {
        ECDSA.RecoverError recoverError;
        (signer, recoverError,) =
            ECDSA.tryRecoverCalldata(_hashTypedDataV4(OracleTypes.responseStructHash(r, resultHash)), signature);
        if (recoverError != ECDSA.RecoverError.NoError) return (signer, InvalidSignature.selector);
        if (payeeOf[signer] == address(0)) return (signer, UnauthorizedSigner.selector);
    }

    /// @dev Success carries no reason; failure carries a known reason and no result.
    function _statusConsistent(Response calldata r) private pure returns (bool) {
        if (r.status == uint8(Status.Success)) return r.reasonCode == uint16(ReasonCode.None);
        if (r.status == uint8(Status.Failure)) {
            return r.reasonCode != uint16(ReasonCode.None) && r.reasonCode <= uint16(type(ReasonCode).max)
                && r.result.length == 0;
        }
        return false;
    }

    /// @dev Calls the consumer with exactly `callbackGasLimit` gas and copies no return data, so a
    /// hostile consumer can neither starve the oracle nor make it pay for a huge return buffer.
    /// A consumer without code, or one that reverts, leaves the fulfillment settled.
    function _callConsumer(Response calldata r, Commitment calldata c) private returns (bool success) {
        bytes memory payload = abi.encodeCall(
            IAIOracleConsumer.onOracleResult,
            (r.requestId, r.status, r.reasonCode, r.result, r.modelUsed, r.receiptHash)
        );
        address target = c.callback;
        uint256 gasAmount = c.callbackGasLimit;
        bytes4 insufficientGas = InsufficientGasForCallback.selector;
        bytes32 id = r.requestId;
        assembly ("memory-safe") {
            // extcodesize first: it warms the address, so the CALL below costs a fixed 100 gas.
            if extcodesize(target) {
                let g := gas()
                if lt(g, GAS_FOR_CALL_EXACT_CHECK) {
                    mstore(0, insufficientGas)
                    mstore(4, id)
                    revert(0, 36)
                }
                g := sub(g, GAS_FOR_CALL_EXACT_CHECK)
                if iszero(gt(sub(g, div(g, 64)), gasAmount)) {
                    mstore(0, insufficientGas)
                    mstore(4, id)
                    revert(0, 36)
                }
                success := call(gasAmount, target, 0, add(payload, 0x20), mload(payload), 0, 0)
            }
        }
    }

    /// @dev Reverts with `selector(requestId)`: every fulfillment error takes the request id alone.
    function _revertFor(bytes4 selector, bytes32 requestId) private pure {
        assembly ("memory-safe") {
            mstore(0, selector)
            mstore(4, requestId)
            revert(0, 36)
        }
    }

    // ------------------------------------------------------------------ refunds and withdrawals

    /// @inheritdoc IAIOracle
    /// @notice After the deadline of an unanswered request, credits its fee back to the requester, who
    /// alone may cancel (a consumer contract can then pass the refund on to whoever paid).
    function cancel(bytes32 requestId, Commitment calldata commitment) external {
        bytes32 stored = commitments[requestId];
        if (stored == bytes32(0)) revert UnknownRequest(requestId);
        if (stored != OracleTypes.commitmentHash(commitment)) revert CommitmentMismatch(requestId);
        if (msg.sender != commitment.requester) revert NotRequester(requestId, msg.sender);
        if (block.timestamp <= commitment.deadline) revert NotExpired(requestId, commitment.deadline);
        delete commitments[requestId];
        balanceOf[commitment.requester] += commitment.fee;
        emit Cancelled(requestId, commitment.requester, commitment.fee);
    }

    /// @inheritdoc IAIOracle
    /// @notice Sends the caller's whole balance (fees earned as a payee, or refunds) to `to`.
    function withdraw(address payable to) external {
        uint256 amount = balanceOf[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        balanceOf[msg.sender] = 0;
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert WithdrawFailed(to);
        emit Withdrawn(msg.sender, to, amount);
    }

    // ------------------------------------------------------------------ off-chain results

    /// @inheritdoc IAIOracle
    /// @notice Checks a result sold off-chain: named for the calling consumer, signed by a registered
    /// signer, still valid. Returns the signer; reverts otherwise. Consumers record `resultId`
    /// themselves so each result is used once (see AIConsumer).
    function verifyOffchainResult(OffchainResult calldata result, bytes calldata signature)
        external
        view
        returns (address signer)
    {
        if (result.consumer != msg.sender) revert NotConsumer(result.consumer, msg.sender);
        if (block.timestamp > result.validUntil) revert RequestExpired(result.resultId);
        ECDSA.RecoverError recoverError;
        (signer, recoverError,) =
            ECDSA.tryRecoverCalldata(_hashTypedDataV4(OracleTypes.offchainResultStructHash(result)), signature);
        if (recoverError != ECDSA.RecoverError.NoError) revert InvalidSignature(result.resultId);
        if (payeeOf[signer] == address(0)) revert UnauthorizedSigner(result.resultId);
    }

    // ------------------------------------------------------------------ admin

    /// @notice Registers `signer` (or changes its payee). Responses it signs credit fees to `payee`.
    function setSigner(address signer, address payee) external onlyOwner {
        if (signer == address(0) || payee == address(0)) revert InvalidPayee();
        payeeOf[signer] = payee;
        emit SignerSet(signer, payee);
    }

    /// @notice Unregisters `signer`: its signatures are no longer accepted.
    function removeSigner(address signer) external onlyOwner {
        delete payeeOf[signer];
        emit SignerRemoved(signer);
    }

    /// @notice Sets the fee schedule of one {PolicyClass}.
    function setFeeSchedule(uint8 policyClass, FeeSchedule calldata schedule) external onlyOwner {
        if (policyClass > uint8(type(PolicyClass).max)) revert UnknownPolicyClass(policyClass);
        _fees[policyClass] = schedule;
        emit FeeScheduleSet(policyClass, schedule);
    }

    /// @notice Sets the request limits.
    function setLimits(Limits calldata newLimits) external onlyOwner {
        _setLimits(newLimits);
    }

    /// @notice Stops (or resumes) requests and fulfillments. Cancels and withdrawals always work.
    function setPaused(bool paused_) external onlyOwner {
        _config.paused = paused_;
        emit PausedSet(paused_);
    }

    function _setLimits(Limits memory l) private {
        if (
            l.maxCallbackGas == 0 || l.maxPromptBytes == 0 || l.maxResultBytes == 0 || l.maxTokens == 0
                || l.maxDeadlineWindow == 0 || l.maxModelSpecBytes == 0 || l.maxChoiceLabels < 2
        ) revert InvalidLimits();
        _config = Config({
            maxCallbackGas: l.maxCallbackGas,
            maxPromptBytes: l.maxPromptBytes,
            maxResultBytes: l.maxResultBytes,
            maxTokens: l.maxTokens,
            maxDeadlineWindow: l.maxDeadlineWindow,
            maxModelSpecBytes: l.maxModelSpecBytes,
            maxChoiceLabels: l.maxChoiceLabels,
            paused: _config.paused
        });
        emit LimitsSet(l);
    }

    // ------------------------------------------------------------------ views

    function limits() external view returns (Limits memory) {
        Config memory c = _config;
        return Limits(
            c.maxCallbackGas, c.maxPromptBytes, c.maxResultBytes, c.maxTokens, c.maxDeadlineWindow,
            c.maxModelSpecBytes, c.maxChoiceLabels
        );
    }

    function paused() external view returns (bool) {
        return _config.paused;
    }

    function feeSchedule(uint8 policyClass) external view returns (FeeSchedule memory) {
        if (policyClass > uint8(type(PolicyClass).max)) revert UnknownPolicyClass(policyClass);
        return _fees[policyClass];
    }

    /// @notice The EIP-712 domain separator responses are signed under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice EIP-712 digest of a response, for off-chain signers and tests.
    function responseDigest(Response calldata response) external view returns (bytes32) {
        return _hashTypedDataV4(OracleTypes.responseStructHash(response, keccak256(response.result)));
    }

    // ------------------------------------------------------------------ request validation

    function _validateRequest(RequestParams calldata p, Config memory cfg) private view {
        if (p.callback == address(0)) revert InvalidCallback();
        if (p.callbackGasLimit > cfg.maxCallbackGas) revert CallbackGasTooHigh(p.callbackGasLimit, cfg.maxCallbackGas);
        uint256 promptLength = p.prompt.length;
        if (promptLength == 0) revert EmptyPrompt();
        if (promptLength > cfg.maxPromptBytes) revert PromptTooLarge(promptLength, cfg.maxPromptBytes);
        if (p.maxTokens == 0 || p.maxTokens > cfg.maxTokens) revert InvalidMaxTokens(p.maxTokens, cfg.maxTokens);
        if (p.temperature > OracleTypes.MAX_TEMPERATURE) {
            revert InvalidTemperature(p.temperature, OracleTypes.MAX_TEMPERATURE);
        }
        uint256 latest = block.timestamp + cfg.maxDeadlineWindow;
        if (p.deadline <= block.timestamp || p.deadline > latest) revert InvalidDeadline(p.deadline, latest);
        _validateResult(p.result, cfg);
    }

    function _validateResult(ResultSpec calldata r, Config memory cfg) private pure {
        uint8 kind = r.kind;
        if (kind > uint8(type(ResultType).max)) revert UnknownResultType(kind);

        bool sized = kind == uint8(ResultType.Text) || kind == uint8(ResultType.Json) || kind == uint8(ResultType.Abi);
        if (sized) {
            if (r.maxBytes == 0 || r.maxBytes > cfg.maxResultBytes) {
                revert InvalidResultSize(r.maxBytes, cfg.maxResultBytes);
            }
        } else if (r.maxBytes != 0) {
            revert UnusedResultField(kind);
        }

        if (kind == uint8(ResultType.Uint)) {
            if (r.min > r.max) revert InvalidResultBounds(kind);
        } else if (kind == uint8(ResultType.Int)) {
            if (int256(r.min) > int256(r.max)) revert InvalidResultBounds(kind);
        } else if (r.min != 0 || r.max != 0) {
            revert UnusedResultField(kind);
        }

        if (kind == uint8(ResultType.Choice)) {
            _validateLabels(r.labels, cfg.maxChoiceLabels);
        } else if (r.labels.length != 0) {
            revert UnusedResultField(kind);
        }

        if (kind == uint8(ResultType.Abi)) {
            _validateAbiType(bytes(r.abiType));
        } else if (bytes(r.abiType).length != 0) {
            revert UnusedResultField(kind);
        }
    }

    /// @dev 2..`maxLabels` labels, each 1..MAX_LABEL_BYTES bytes and each given once (an answer names a
    /// label, so two equal ones could not be told apart). At most `maxLabels`^2/2 comparisons of hashes.
    function _validateLabels(string[] calldata labels, uint256 maxLabels) private pure {
        uint256 n = labels.length;
        if (n < 2 || n > maxLabels) revert InvalidChoiceLabels(n, maxLabels);
        bytes32[] memory seen = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i) {
            bytes calldata label = bytes(labels[i]);
            if (label.length == 0 || label.length > OracleTypes.MAX_LABEL_BYTES) {
                revert InvalidChoiceLabels(n, maxLabels);
            }
            bytes32 h = keccak256(label);
            for (uint256 j = 0; j < i; ++j) {
                if (seen[j] == h) revert DuplicateChoiceLabel(j, i);
            }
            seen[i] = h;
        }
    }

    /// @dev A tuple type string: "(" ... ")", balanced, lowercase letters, digits, ",", "[", "]" only.
    /// The daemon checks the element types themselves and refuses the request if it cannot encode them.
    function _validateAbiType(bytes calldata t) private pure {
        uint256 n = t.length;
        if (n < 3 || n > OracleTypes.MAX_ABI_TYPE_BYTES || t[0] != "(" || t[n - 1] != ")") revert InvalidAbiType();
        uint256 depth = 0;
        for (uint256 i = 0; i < n; ++i) {
            bytes1 c = t[i];
            if (c == "(") {
                ++depth;
            } else if (c == ")") {
                if (depth == 0) revert InvalidAbiType();
                --depth;
                if (depth == 0 && i != n - 1) revert InvalidAbiType();
            } else if (!ModelSpec.isIn(ModelSpec.ABI_TYPE_CHARS, c)) {
                revert InvalidAbiType();
            }
        }
        if (depth != 0) revert InvalidAbiType();
    }
}
