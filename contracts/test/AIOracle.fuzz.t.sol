// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {OracleTestBase} from "./utils/OracleTestBase.sol";
import {IAIOracle} from "../src/interfaces/IAIOracle.sol";
import {IAIOracleErrors} from "../src/interfaces/IAIOracleErrors.sol";
import {TypedResultsConsumer} from "../src/examples/TypedResultsConsumer.sol";
import {
    RequestParams, ResultType, Commitment, Response, FeeSchedule, PolicyClass, OracleTypes
} from "../src/OracleTypes.sol";

contract CommitmentHasher {
    function commitmentHash(Commitment calldata c) external pure returns (bytes32) {
        return OracleTypes.commitmentHash(c);
    }
}

contract AIOracleFuzzTest is OracleTestBase {
    uint256 private constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    TypedResultsConsumer private typed;

    function setUp() public override {
        super.setUp();
        typed = new TypedResultsConsumer(oracle);
    }

    function testFuzz_no_other_key_can_fulfill(uint256 key) public {
        key = bound(key, 1, SECP256K1_N - 1);
        vm.assume(key != SIGNER_KEY);
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("x"));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.UnauthorizedSigner.selector, id));
        oracle.fulfill(r, c, sign(key, r));
    }

    function testFuzz_altered_signature_is_rejected(uint256 position, uint8 mask) public {
        vm.assume(mask != 0);
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("x"));
        bytes memory sig = sign(SIGNER_KEY, r);
        sig[bound(position, 0, 64)] ^= bytes1(mask);
        (bool ok,) = address(oracle).call(abi.encodeCall(IAIOracle.fulfill, (r, c, sig)));
        assertTrue(!ok, "altered signature accepted");
        assertTrue(oracle.commitments(id) != bytes32(0), "still open");
    }

    function testFuzz_signature_binds_every_field(uint8 field, bytes32 noise) public {
        vm.assume(noise != bytes32(0));
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("x"));
        bytes memory sig = sign(SIGNER_KEY, r);
        field = uint8(bound(field, 0, 2));
        if (field == 0) r.modelUsed ^= noise;
        else if (field == 1) r.receiptHash ^= noise;
        else r.result = abi.encode(noise);
        (bool ok,) = address(oracle).call(abi.encodeCall(IAIOracle.fulfill, (r, c, sig)));
        assertTrue(!ok, "changed field accepted");
    }

    function testFuzz_quote_formula_and_fee_boundary(
        uint96 baseFee,
        uint64 perGas,
        uint96 perToken,
        uint32 maxTokens,
        uint32 gasLimit,
        uint8 k
    ) public {
        baseFee = uint96(bound(baseFee, 0, 1 ether));
        perGas = uint64(bound(perGas, 0, 100 gwei));
        perToken = uint96(bound(perToken, 0, 1 gwei));
        maxTokens = uint32(bound(maxTokens, 1, 8_192));
        gasLimit = uint32(bound(gasLimit, 0, 2_000_000));
        k = uint8(bound(k, 2, 9));
        vm.startPrank(OWNER);
        oracle.setFeeSchedule(uint8(PolicyClass.Exact), FeeSchedule(baseFee, perGas, perToken));
        oracle.setFeeSchedule(uint8(PolicyClass.Ensemble), FeeSchedule(baseFee, perGas, perToken));
        vm.stopPrank();

        uint256 single = uint256(baseFee) + uint256(perToken) * maxTokens + uint256(perGas) * gasLimit;
        assertEq(oracle.quote("m", maxTokens, gasLimit), single, "exact quote");
        string memory ensemble = string(abi.encodePacked("ensemble:", bytes1(uint8(0x30 + k))));
        uint256 many = k * (uint256(baseFee) + uint256(perToken) * maxTokens) + uint256(perGas) * gasLimit;
        assertEq(oracle.quote(ensemble, maxTokens, gasLimit), many, "ensemble quote");

        RequestParams memory p = textParams(address(consumer));
        p.modelSpec = "m";
        p.maxTokens = maxTokens;
        p.callbackGasLimit = gasLimit;
        if (single > 0) {
            vm.prank(REQUESTER);
            vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.FeeBelowQuote.selector, single - 1, single));
            oracle.request{value: single - 1}(p);
        }
        vm.prank(REQUESTER);
        bytes32 id = oracle.request{value: single}(p);
        assertEq(oracle.commitments(id), keccak256(abi.encode(commitmentOf(p, REQUESTER, single))), "escrowed quote");
    }

    function _ask(RequestParams memory p) private returns (bytes32 id, Commitment memory c) {
        p.callback = address(typed);
        uint256 fee = quoteOf(p);
        vm.prank(REQUESTER);
        id = typed.ask{value: fee}(p);
        c = commitmentOf(p, address(typed), fee);
    }

    function _deliver(bytes32 id, Commitment memory c, bytes memory result) private {
        Response memory r = success(id, c, result);
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        assertTrue(typed.decoded(id).delivered, "delivered");
    }

    function testFuzz_uint_result_decodes(uint256 value) public {
        (bytes32 id, Commitment memory c) = _ask(uintParams(address(0), 0, type(uint256).max));
        _deliver(id, c, abi.encode(value));
        assertEq(typed.decoded(id).unsignedValue, value, "uint");
    }

    function testFuzz_int_result_decodes(int256 value) public {
        RequestParams memory p = uintParams(address(0), uint256(type(int256).min), uint256(type(int256).max));
        p.result.kind = uint8(ResultType.Int);
        (bytes32 id, Commitment memory c) = _ask(p);
        _deliver(id, c, abi.encode(value));
        assertEq(typed.decoded(id).signedValue, value, "int");
    }

    function testFuzz_bool_and_choice_results_decode(bool flag, uint8 index) public {
        RequestParams memory p = textParams(address(0));
        p.result.kind = uint8(ResultType.Bool);
        p.result.maxBytes = 0;
        (bytes32 id, Commitment memory c) = _ask(p);
        _deliver(id, c, abi.encode(flag));
        assertEq(typed.decoded(id).flag, flag, "bool");

        p.result.kind = uint8(ResultType.Choice);
        p.result.labels = new string[](3);
        (p.result.labels[0], p.result.labels[1], p.result.labels[2]) = ("for", "against", "abstain");
        uint256 choice = bound(index, 0, 2);
        (id, c) = _ask(p);
        _deliver(id, c, abi.encode(choice));
        assertEq(typed.decoded(id).unsignedValue, choice, "choice");
    }

    function testFuzz_commitment_hash_is_keccak_of_its_abi_encoding(Commitment memory c) public {
        assertEq(new CommitmentHasher().commitmentHash(c), keccak256(abi.encode(c)), "commitment hash");
    }

        function testFuzz_result_is_bounded_by_its_requests_own_size(uint8 kind, uint32 maxBytes, uint256 length)
        public
    {
        RequestParams memory p = textParams(address(consumer));
        kind = uint8(bound(kind, 0, 2));
        if (kind == 0) {
            p.result.maxBytes = uint32(bound(maxBytes, 1, 4_096)); // Text, at most the oracle's limit
        } else if (kind == 1) {
            p = uintParams(address(consumer), 0, 100);
        } else {
            p.result.kind = uint8(ResultType.Abi);
            p.result.maxBytes = uint32(bound(maxBytes, 1, 4_096));
            p.result.abiType = "(bytes)";
        }
        uint256 allowed = kind == 1 ? 32 : uint256(p.result.maxBytes) + 96;
        length = bound(length, 0, allowed + 200);
        (bytes32 id, Commitment memory c) = request(p);
        Response memory r = success(id, c, new bytes(length));
        bytes memory sig = sign(SIGNER_KEY, r);
        if (length > allowed) {
            vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.ResultTooLarge.selector, id));
            oracle.fulfill(r, c, sig);
        } else {
            oracle.fulfill(r, c, sig);
            assertEq(oracle.commitments(id), bytes32(0), "settled");
        }
    }

    function testFuzz_text_and_abi_results_decode(string memory text, uint256 n, bool flag) public {
        vm.assume(bytes(text).length <= 1_000);
        RequestParams memory p = textParams(address(0));
        p.callbackGasLimit = 1_500_000;
        (bytes32 id, Commitment memory c) = _ask(p);
        _deliver(id, c, abi.encode(text));
        assertEq(typed.decoded(id).text, text, "text");

        p.result.kind = uint8(ResultType.Abi);
        p.result.maxBytes = 2_048;
        p.result.abiType = typed.ABI_TUPLE();
        (id, c) = _ask(p);
        _deliver(id, c, abi.encode(text, n, flag));
        assertEq(typed.decoded(id).text, text, "abi string");
        assertEq(typed.decoded(id).unsignedValue, n, "abi uint");
        assertEq(typed.decoded(id).flag, flag, "abi bool");
    }
}
