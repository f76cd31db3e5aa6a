// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {Test} from "./Test.sol";
import {Vm} from "./Vm.sol";
import {Digests} from "./Digests.sol";
import {AIOracle} from "../src/AIOracle.sol";
import {AIConsumer} from "../src/AIConsumer.sol";
import {IAIOracle} from "../src/interfaces/IAIOracle.sol";
import {
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
    ReasonCode,
    OracleTypes
} from "../src/OracleTypes.sol";

/// @title OracleFixture
/// @notice A forge test base for contracts that use the oracle. `setUp` deploys an {AIOracle} with one
/// registered signer and a fee schedule for every policy class; the helpers play the daemon's part:
/// read the requests a call made from its `Requested` events, answer them with signed responses, let a
/// deadline pass and reclaim the fee.
///
///     contract MyConsumerTest is OracleFixture {
///         function test_answer_arrives() public {
///             MyConsumer c = new MyConsumer(oracle);
///             recordRequests();
///             c.ask{value: 1 ether}("Is it raining?");
///             OracleRequest memory r = takeRequest();
///             fulfillSuccess(r, abi.encode(true));
///         }
///     }
abstract contract OracleFixture is Test {
    /// @notice The registered fulfillment signer's key; responses signed with another key are refused.
    uint256 internal constant SIGNER_KEY = 0xA11CE;
    // Well above the precompile range, which Prague extends to 0x11.
    address internal constant OWNER = address(0x10000A);
    address internal constant PAYEE = address(0x10000B);
    /// @notice The block time `setUp` starts at.
    uint256 internal constant START_TIME = 1_700_000_000;

    /// @notice Fee schedule of every class: class `c` costs `(c + 1) * BASE_FEE` plus the per-unit parts.
    uint96 internal constant BASE_FEE = 0.001 ether;
    uint64 internal constant PER_CALLBACK_GAS = 1 gwei;
    uint96 internal constant PER_OUTPUT_TOKEN = 10 gwei;

    AIOracle internal oracle;
    address internal signer;

    /// @notice One request as the daemon sees it: everything needed to answer or cancel it.
    struct OracleRequest {
        bytes32 id;
        address requester;
        uint64 nonce;
        RequestParams params;
        Commitment commitment;
    }

    function setUp() public virtual {
        vm.warp(START_TIME);
        oracle = new AIOracle(OWNER, defaultLimits());
        signer = vm.addr(SIGNER_KEY);
        vm.startPrank(OWNER);
        oracle.setSigner(signer, PAYEE);
        for (uint8 cls = 0; cls <= uint8(type(PolicyClass).max); ++cls) {
            oracle.setFeeSchedule(cls, FeeSchedule(BASE_FEE * (cls + 1), PER_CALLBACK_GAS, PER_OUTPUT_TOKEN));
        }
        vm.stopPrank();
    }

    function defaultLimits() internal pure virtual returns (Limits memory) {
        return Limits({
            maxCallbackGas: 2_000_000,
            maxPromptBytes: 8_192,
            maxResultBytes: 4_096,
            maxTokens: 8_192,
            maxDeadlineWindow: 1 days,
            maxModelSpecBytes: 256,
            maxChoiceLabels: 16
        });
    }

    // ------------------------------------------------------------------ requests

    /// @notice Start recording events: the requests made from here on are read by {takeRequests}.
    function recordRequests() internal {
        vm.recordLogs();
    }

    /// @notice The requests made since {recordRequests}, in order. Consumes forge's recorded logs.
    function takeRequests() internal returns (OracleRequest[] memory found) {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 count = 0;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (_isRequested(logs[i])) ++count;
        }
        found = new OracleRequest[](count);
        count = 0;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (_isRequested(logs[i])) found[count++] = requestOf(logs[i]);
        }
    }

    /// @notice The one request made since {recordRequests}; fails if there was not exactly one.
    function takeRequest() internal returns (OracleRequest memory) {
        OracleRequest[] memory found = takeRequests();
        if (found.length != 1) fail(string.concat("expected one request, got ", _u(found.length)));
        return found[0];
    }

    /// @notice Decode one `Requested` log of this fixture's oracle, its commitment rebuilt from it.
    function requestOf(Vm.Log memory log) internal pure returns (OracleRequest memory r) {
        r.id = log.topics[1];
        r.requester = address(uint160(uint256(log.topics[2])));
        uint256 fee;
        bytes32 paramsHash;
        (r.nonce, fee, paramsHash, r.params) = abi.decode(log.data, (uint64, uint256, bytes32, RequestParams));
        r.commitment = Commitment({
            requester: r.requester,
            callback: r.params.callback,
            callbackGasLimit: r.params.callbackGasLimit,
            deadline: r.params.deadline,
            maxResultBytes: resultBound(r.params.result),
            fee: fee,
            paramsHash: paramsHash
        });
    }

    function _isRequested(Vm.Log memory log) private view returns (bool) {
        return log.emitter == address(oracle) && log.topics.length == 4
            && log.topics[0] == IAIOracle.Requested.selector;
    }

    /// @notice The commitment of a request for `p` by `requester` paying `fee`, computed from the spec.
    function commitmentOf(RequestParams memory p, address requester, uint256 fee)
        internal
        pure
        returns (Commitment memory)
    {
        return Commitment({
            requester: requester,
            callback: p.callback,
            callbackGasLimit: p.callbackGasLimit,
            deadline: p.deadline,
            maxResultBytes: resultBound(p.result),
            fee: fee,
            paramsHash: keccak256(abi.encode(p))
        });
    }

    /// @notice The longest result a response may carry, by the spec: one word, or maxBytes plus 96 bytes
    /// of ABI framing for the sized kinds.
    function resultBound(ResultSpec memory r) internal pure returns (uint64) {
        bool sized = r.kind == uint8(ResultType.Text) || r.kind == uint8(ResultType.Json)
            || r.kind == uint8(ResultType.Abi);
        return sized ? uint64(r.maxBytes) + 96 : 32;
    }

    function quoteOf(RequestParams memory p) internal view returns (uint256) {
        return oracle.quote(p.modelSpec, p.maxTokens, p.callbackGasLimit);
    }

    // ------------------------------------------------------------------ responses

    /// @notice A success response to request `id` carrying `result` (`abi.encode` of the typed value).
    function success(bytes32 id, Commitment memory c, bytes memory result) internal pure returns (Response memory) {
        return Response({
            requestId: id,
            commitment: keccak256(abi.encode(c)),
            status: uint8(Status.Success),
            reasonCode: uint16(ReasonCode.None),
            result: result,
            modelUsed: keccak256("gpt-4o-2024-08-06"),
            receiptHash: keccak256(abi.encodePacked("receipt", id))
        });
    }

    function failure(bytes32 id, Commitment memory c, ReasonCode reason) internal pure returns (Response memory r) {
        r = success(id, c, "");
        r.status = uint8(Status.Failure);
        r.reasonCode = uint16(reason);
    }

    /// @notice Answer `r` with `result` (e.g. `abi.encode(true)`), signed by the registered signer.
    function fulfillSuccess(OracleRequest memory r, bytes memory result) internal returns (Response memory response) {
        response = success(r.id, r.commitment, result);
        oracle.fulfill(response, r.commitment, sign(SIGNER_KEY, response));
    }

    /// @notice Answer `r` with a failure for `reason`, signed by the registered signer.
    function fulfillFailure(OracleRequest memory r, ReasonCode reason) internal returns (Response memory response) {
        response = failure(r.id, r.commitment, reason);
        oracle.fulfill(response, r.commitment, sign(SIGNER_KEY, response));
    }

    /// @dev Signs with the EIP-712 digest computed here from the spec, not by the contract.
    function sign(uint256 key, Response memory r) internal view returns (bytes memory) {
        return signFor(key, r, block.chainid, address(oracle));
    }

    function signFor(uint256 key, Response memory r, uint256 chainId, address verifyingContract)
        internal
        pure
        returns (bytes memory)
    {
        (uint8 v, bytes32 rr, bytes32 s) = vm.sign(key, responseDigest(r, chainId, verifyingContract));
        return abi.encodePacked(rr, s, v);
    }

    function responseDigest(Response memory r, uint256 chainId, address verifyingContract)
        internal
        pure
        returns (bytes32)
    {
        return Digests.response(r, chainId, verifyingContract);
    }

    /// @notice Sign a result sold off-chain, for {AIConsumer.acceptSignedResult}.
    function signOffchain(uint256 key, OffchainResult memory r) internal view returns (bytes memory) {
        bytes32 structHash = keccak256(
            abi.encode(
                OracleTypes.OFFCHAIN_RESULT_TYPEHASH, r.resultId, r.consumer, r.queryHash, r.status, r.reasonCode,
                keccak256(r.result), r.modelUsed, r.receiptHash, r.validUntil
            )
        );
        (uint8 v, bytes32 rr, bytes32 s) =
            vm.sign(key, keccak256(abi.encodePacked("\x19\x01", oracle.domainSeparator(), structHash)));
        return abi.encodePacked(rr, s, v);
    }

    // ------------------------------------------------------------------ deadlines and refunds

    /// @notice Move block time to the first second `r` can be cancelled (its deadline plus one).
    function warpPastDeadline(OracleRequest memory r) internal {
        vm.warp(uint256(r.commitment.deadline) + 1);
    }

    /// @notice Reclaim `r`'s fee through `consumer` as `caller`: credited to the payer's refund balance.
    function reclaim(AIConsumer consumer, OracleRequest memory r, address caller) internal {
        vm.prank(caller);
        consumer.reclaimFee(r.id, r.commitment);
    }

    /// @notice Reclaim `r`'s fee through `consumer` as its `payer`, sent straight to `to`.
    function reclaimTo(AIConsumer consumer, OracleRequest memory r, address payer, address payable to) internal {
        vm.prank(payer);
        consumer.reclaimFee(r.id, r.commitment, to);
    }

    /// @notice Cancel `r` at the oracle as its requester (a requester that is not an {AIConsumer}).
    function cancel(OracleRequest memory r) internal {
        vm.prank(r.requester);
        oracle.cancel(r.id, r.commitment);
    }
}
