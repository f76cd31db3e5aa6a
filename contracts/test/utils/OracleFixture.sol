// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {Test} from "./Test.sol";
import {Digests} from "./Digests.sol";
import {NoopConsumer, RecordingConsumer} from "./Consumers.sol";
import {AIOracle} from "../../src/AIOracle.sol";
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
} from "../../src/OracleTypes.sol";

/// @notice A deployed oracle with one registered signer, fees set, and helpers to request and answer.
abstract contract OracleFixture is Test {
    uint256 internal constant SIGNER_KEY = 0xA11CE;
    uint256 internal constant OTHER_KEY = 0xB0B;
    // Well above the precompile range, which Prague extends to 0x11.
    address internal constant OWNER = address(0x10000A);
    address internal constant PAYEE = address(0x10000B);
    address internal constant REQUESTER = address(0x10000C);
    address internal constant RELAYER = address(0x10000D);

    uint96 internal constant BASE_FEE = 0.001 ether;
    uint64 internal constant PER_CALLBACK_GAS = 1 gwei;
    uint96 internal constant PER_OUTPUT_TOKEN = 10 gwei;

    AIOracle internal oracle;
    address internal signer;
    RecordingConsumer internal consumer;

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        oracle = new AIOracle(OWNER, defaultLimits());
        signer = vm.addr(SIGNER_KEY);
        vm.startPrank(OWNER);
        oracle.setSigner(signer, PAYEE);
        for (uint8 cls = 0; cls <= uint8(type(PolicyClass).max); ++cls) {
            oracle.setFeeSchedule(cls, FeeSchedule(BASE_FEE * (cls + 1), PER_CALLBACK_GAS, PER_OUTPUT_TOKEN));
        }
        vm.stopPrank();
        consumer = new RecordingConsumer();
        vm.deal(REQUESTER, 1_000 ether);
        vm.deal(RELAYER, 1 ether);
    }

    function defaultLimits() internal pure returns (Limits memory) {
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

    function textParams(address callback) internal view returns (RequestParams memory p) {
        ResultSpec memory r;
        r.kind = uint8(ResultType.Text);
        r.maxBytes = 1_024;
        p = RequestParams({
            callback: callback,
            callbackGasLimit: 300_000,
            deadline: uint64(block.timestamp + 1 hours),
            maxTokens: 256,
            temperature: 0,
            seed: 7,
            modelSpec: "gpt-4o-2024-08-06",
            prompt: "Summarise the proposal.",
            result: r
        });
    }

    function uintParams(address callback, uint256 lo, uint256 hi) internal view returns (RequestParams memory p) {
        p = textParams(callback);
        p.result.kind = uint8(ResultType.Uint);
        p.result.maxBytes = 0;
        p.result.min = lo;
        p.result.max = hi;
    }

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

    /// @dev The longest result a response may carry, by the spec: one word, or maxBytes plus 96 bytes of
    /// ABI framing for the sized kinds.
    function resultBound(ResultSpec memory r) internal pure returns (uint64) {
        bool sized = r.kind == uint8(ResultType.Text) || r.kind == uint8(ResultType.Json)
            || r.kind == uint8(ResultType.Abi);
        return sized ? uint64(r.maxBytes) + 96 : 32;
    }

    function quoteOf(RequestParams memory p) internal view returns (uint256) {
        return oracle.quote(p.modelSpec, p.maxTokens, p.callbackGasLimit);
    }

    /// @dev Requests `p` from REQUESTER paying exactly the quote.
    function request(RequestParams memory p) internal returns (bytes32 id, Commitment memory c) {
        uint256 fee = quoteOf(p);
        vm.prank(REQUESTER);
        id = oracle.request{value: fee}(p);
        c = commitmentOf(p, REQUESTER, fee);
    }

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
}
