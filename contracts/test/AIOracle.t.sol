// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {OracleTestBase} from "./utils/OracleTestBase.sol";
import {
    NoopConsumer,
    RecordingConsumer,
    RevertingConsumer,
    GasBurningConsumer,
    HugeReturnConsumer,
    ReentrantConsumer
} from "./utils/Consumers.sol";
import {Vm} from "../kit/Vm.sol";
import {AIOracle} from "../src/AIOracle.sol";
import {IAIOracle} from "../src/interfaces/IAIOracle.sol";
import {ModelSpec} from "../src/ModelSpec.sol";
import {IAIOracleErrors} from "../src/interfaces/IAIOracleErrors.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {
    RequestParams,
    ResultType,
    Commitment,
    Response,
    FeeSchedule,
    Limits,
    PolicyClass,
    Status,
    ReasonCode,
    OracleTypes
} from "../src/OracleTypes.sol";

contract AIOracleRequestTest is OracleTestBase {
    function test_quote_follows_fee_schedule() public view {
        uint256 expected = BASE_FEE + uint256(PER_OUTPUT_TOKEN) * 256 + uint256(PER_CALLBACK_GAS) * 300_000;
        assertEq(oracle.quote("gpt-4o-2024-08-06", 256, 300_000), expected, "exact-model quote");
    }

    function test_quote_of_policy_classes() public view {
        uint256 cheapest = 2 * BASE_FEE + uint256(PER_OUTPUT_TOKEN) * 10 + uint256(PER_CALLBACK_GAS) * 1_000;
        assertEq(oracle.quote("cheapest;max_price=2000", 10, 1_000), cheapest, "cheapest class");
        // ensemble:3 pays the model part three times, the callback once
        uint256 ensemble = 3 * (5 * BASE_FEE + uint256(PER_OUTPUT_TOKEN) * 10) + uint256(PER_CALLBACK_GAS) * 1_000;
        assertEq(oracle.quote("ensemble:3", 10, 1_000), ensemble, "ensemble class");
    }

    function test_request_escrows_fee_stores_commitment_and_emits_everything() public {
        RequestParams memory p = textParams(address(consumer));
        uint256 fee = quoteOf(p) + 1 wei; // overpaying is allowed and escrowed whole
        vm.recordLogs();
        vm.prank(REQUESTER);
        bytes32 id = oracle.request{value: fee}(p);

        assertEq(id, OracleTypes.requestId(block.chainid, address(oracle), REQUESTER, 0), "request id formula");
        assertEq(oracle.commitments(id), keccak256(abi.encode(commitmentOf(p, REQUESTER, fee))), "commitment");
        assertEq(address(oracle).balance, fee, "escrowed");
        assertEq(uint256(oracle.nonces(REQUESTER)), 1, "nonce advanced");

        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 1, "one event");
        assertEq(logs[0].topics[0], IAIOracle.Requested.selector, "Requested");
        assertEq(logs[0].topics[1], id, "id topic");
        (uint64 nonce, uint256 loggedFee, bytes32 paramsHash, RequestParams memory logged) =
            abi.decode(logs[0].data, (uint64, uint256, bytes32, RequestParams));
        assertEq(uint256(nonce), 0, "nonce");
        assertEq(loggedFee, fee, "fee");
        assertEq(paramsHash, keccak256(abi.encode(p)), "params hash, as the commitment holds it");
        assertEq(keccak256(abi.encode(logged)), keccak256(abi.encode(p)), "params round-trip");
    }

    function test_request_ids_differ_per_requester_nonce_and_deployment() public {
        RequestParams memory p = textParams(address(consumer));
        (bytes32 a,) = request(p);
        (bytes32 b,) = request(p);
        AIOracle other = new AIOracle(OWNER, defaultLimits());
        vm.prank(REQUESTER);
        bytes32 c = other.request{value: 1 ether}(p);
        assertTrue(a != b && a != c && b != c, "ids unique");
    }

    function _expectRequestRevert(RequestParams memory p, uint256 value, bytes memory err) private {
        vm.prank(REQUESTER);
        vm.expectRevert(err);
        oracle.request{value: value}(p);
    }

    function test_reverts_fee_below_quote() public {
        RequestParams memory p = textParams(address(consumer));
        uint256 q = quoteOf(p);
        _expectRequestRevert(p, q - 1, abi.encodeWithSelector(IAIOracleErrors.FeeBelowQuote.selector, q - 1, q));
    }

    function test_reverts_oversize_prompt() public {
        RequestParams memory p = textParams(address(consumer));
        p.prompt = new bytes(8_193);
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.PromptTooLarge.selector, 8_193, 8_192));
    }

    function test_reverts_empty_prompt() public {
        RequestParams memory p = textParams(address(consumer));
        p.prompt = "";
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.EmptyPrompt.selector));
    }

    function test_reverts_unknown_result_type() public {
        RequestParams memory p = textParams(address(consumer));
        p.result.kind = 7;
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.UnknownResultType.selector, 7));
    }

    function test_reverts_callback_gas_above_maximum() public {
        RequestParams memory p = textParams(address(consumer));
        p.callbackGasLimit = 2_000_001;
        _expectRequestRevert(
            p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.CallbackGasTooHigh.selector, 2_000_001, 2_000_000)
        );
    }

    function test_reverts_nonsensical_uint_bounds() public {
        RequestParams memory p = uintParams(address(consumer), 10, 9);
        _expectRequestRevert(
            p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidResultBounds.selector, uint8(ResultType.Uint))
        );
    }

    function test_reverts_nonsensical_int_bounds() public {
        RequestParams memory p = uintParams(address(consumer), uint256(int256(5)), uint256(int256(-5)));
        p.result.kind = uint8(ResultType.Int);
        _expectRequestRevert(
            p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidResultBounds.selector, uint8(ResultType.Int))
        );
    }

    function test_accepts_negative_int_bounds() public {
        RequestParams memory p = uintParams(address(consumer), uint256(int256(-100)), uint256(int256(100)));
        p.result.kind = uint8(ResultType.Int);
        request(p);
    }

    function test_reverts_bounds_on_a_type_without_bounds() public {
        RequestParams memory p = textParams(address(consumer));
        p.result.max = 5;
        _expectRequestRevert(
            p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.UnusedResultField.selector, uint8(ResultType.Text))
        );
    }

    function test_reverts_text_without_size_or_above_limit() public {
        RequestParams memory p = textParams(address(consumer));
        p.result.maxBytes = 0;
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidResultSize.selector, 0, 4_096));
        p.result.maxBytes = 4_097;
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidResultSize.selector, 4_097, 4_096));
    }

    function test_reverts_choice_with_too_few_or_empty_labels() public {
        RequestParams memory p = textParams(address(consumer));
        p.result.kind = uint8(ResultType.Choice);
        p.result.maxBytes = 0;
        p.result.labels = new string[](1);
        p.result.labels[0] = "yes";
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidChoiceLabels.selector, 1, 16));
        p.result.labels = new string[](2);
        p.result.labels[0] = "yes";
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidChoiceLabels.selector, 2, 16));
    }

    function test_reverts_a_choice_label_given_twice() public {
        RequestParams memory p = textParams(address(consumer));
        p.result.kind = uint8(ResultType.Choice);
        p.result.maxBytes = 0;
        p.result.labels = new string[](4);
        (p.result.labels[0], p.result.labels[1], p.result.labels[2], p.result.labels[3]) = ("for", "against", "abstain", "against");
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.DuplicateChoiceLabel.selector, 1, 3));
        p.result.labels[3] = "Against"; // labels are compared byte for byte
        request(p);
    }

    function test_reverts_malformed_abi_type() public {
        RequestParams memory p = textParams(address(consumer));
        p.result.kind = uint8(ResultType.Abi);
        string[5] memory bad = ["string", "(string", "(string))", "(String)", "(uint8)(bool)"];
        for (uint256 i = 0; i < bad.length; ++i) {
            p.result.abiType = bad[i];
            _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidAbiType.selector));
        }
        p.result.abiType = "(string,uint8[],(bool,int256))";
        request(p);
    }

    function test_reverts_malformed_model_spec_naming_the_offset() public {
        RequestParams memory p = textParams(address(consumer));
        p.modelSpec = "gpt 4o";
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidModelSpec.selector, 3));
        p.modelSpec = "a,,b";
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidModelSpec.selector, 2));
        p.modelSpec = "ensemble:1";
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidModelSpec.selector, 9));
        p.modelSpec = "cheapest;max_price";
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidModelSpec.selector, 18));
        p.modelSpec = "";
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidModelSpec.selector, 0));
    }

    function test_reverts_a_model_spec_option_given_twice() public {
        RequestParams memory p = textParams(address(consumer));
        p.modelSpec = "cheapest;max_price=1;max_price=2";
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.DuplicateModelSpecOption.selector, 21));
        p.modelSpec = "cheapest;max_price=1;needs=seed";
        request(p);
    }

    function test_reverts_model_spec_too_long() public {
        RequestParams memory p = textParams(address(consumer));
        p.modelSpec = string(new bytes(257));
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.ModelSpecTooLong.selector, 257, 256));
    }

    function test_reverts_zero_callback() public {
        RequestParams memory p = textParams(address(0));
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidCallback.selector));
    }

    function test_reverts_bad_deadline() public {
        RequestParams memory p = textParams(address(consumer));
        p.deadline = uint64(block.timestamp);
        uint256 latest = block.timestamp + 1 days;
        _expectRequestRevert(
            p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidDeadline.selector, block.timestamp, latest)
        );
        p.deadline = uint64(latest + 1);
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidDeadline.selector, latest + 1, latest));
    }

    function test_reverts_bad_max_tokens_and_temperature() public {
        RequestParams memory p = textParams(address(consumer));
        p.maxTokens = 0;
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidMaxTokens.selector, 0, 8_192));
        p.maxTokens = 10;
        p.temperature = 201;
        _expectRequestRevert(p, 1 ether, abi.encodeWithSelector(IAIOracleErrors.InvalidTemperature.selector, 201, 200));
    }

    function test_reverts_while_paused() public {
        vm.prank(OWNER);
        oracle.setPaused(true);
        _expectRequestRevert(textParams(address(consumer)), 1 ether, abi.encodeWithSelector(IAIOracleErrors.OraclePaused.selector));
    }
}

contract AIOracleFulfillTest is OracleTestBase {
    function test_fulfill_delivers_result_and_credits_payee() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("hello"));
        vm.prank(RELAYER);
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));

        assertEq(consumer.calls(), 1, "called once");
        assertEq(consumer.lastCaller(), address(oracle), "called by oracle");
        assertEq(abi.decode(consumer.lastResult(), (string)), "hello", "decoded result");
        assertEq(consumer.lastModelUsed(), r.modelUsed, "model used");
        assertEq(consumer.lastReceiptHash(), r.receiptHash, "receipt hash");
        assertEq(oracle.commitments(id), bytes32(0), "commitment deleted");
        assertEq(oracle.balanceOf(PAYEE), c.fee, "payee credited");
        assertEq(oracle.balanceOf(RELAYER), 0, "relayer not credited");
    }

    function test_fulfill_emits_fulfilled_with_hashes() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("hello"));
        vm.recordLogs();
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        Vm.Log[] memory logs = vm.getRecordedLogs();
        Vm.Log memory last = logs[logs.length - 1];
        assertEq(last.topics[0], IAIOracle.Fulfilled.selector, "Fulfilled");
        assertEq(last.topics[1], id, "id");
        assertEq(last.topics[2], bytes32(uint256(uint160(signer))), "signer");
        (uint8 status, uint16 reason, bytes32 resultHash, bytes32 receiptHash, bool ok) =
            abi.decode(last.data, (uint8, uint16, bytes32, bytes32, bool));
        assertEq(uint256(status), uint256(Status.Success), "status");
        assertEq(uint256(reason), 0, "reason");
        assertEq(resultHash, keccak256(r.result), "result hash");
        assertEq(receiptHash, r.receiptHash, "receipt");
        assertTrue(ok, "callback ok");
    }

    function test_failure_status_is_delivered_with_reason() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = failure(id, c, ReasonCode.Malformed);
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        assertEq(uint256(consumer.lastStatus()), uint256(Status.Failure), "failure status");
        assertEq(uint256(consumer.lastReason()), uint256(ReasonCode.Malformed), "reason code");
        assertEq(consumer.lastResult().length, 0, "no result");
        assertEq(oracle.balanceOf(PAYEE), c.fee, "failure still pays the signer's payee");
    }

    function test_fulfill_exactly_once() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("hello"));
        bytes memory sig = sign(SIGNER_KEY, r);
        oracle.fulfill(r, c, sig);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.UnknownRequest.selector, id));
        oracle.fulfill(r, c, sig);
        assertEq(consumer.calls(), 1, "one callback");
        assertEq(oracle.balanceOf(PAYEE), c.fee, "paid once");
    }

    function test_rejects_unregistered_signer() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("x"));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.UnauthorizedSigner.selector, id));
        oracle.fulfill(r, c, sign(OTHER_KEY, r));
    }

    function test_rejects_removed_signer() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        vm.prank(OWNER);
        oracle.removeSigner(signer);
        Response memory r = success(id, c, abi.encode("x"));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.UnauthorizedSigner.selector, id));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
    }

    function test_rejects_tampered_result() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("yes"));
        bytes memory sig = sign(SIGNER_KEY, r);
        r.result = abi.encode("no");
        // the recovered address is some other key's: not a registered signer
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.UnauthorizedSigner.selector, id));
        oracle.fulfill(r, c, sig);
    }

    function test_rejects_malformed_signature() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("x"));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.InvalidSignature.selector, id));
        oracle.fulfill(r, c, hex"1234");
    }

    function test_signature_for_another_chain_or_contract_is_rejected() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("x"));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.UnauthorizedSigner.selector, id));
        oracle.fulfill(r, c, signFor(SIGNER_KEY, r, block.chainid + 1, address(oracle)));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.UnauthorizedSigner.selector, id));
        oracle.fulfill(r, c, signFor(SIGNER_KEY, r, block.chainid, address(0xdead)));
    }

    function test_rejects_wrong_commitment() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Commitment memory forged = c;
        forged.fee = c.fee * 2;
        Response memory r = success(id, forged, abi.encode("x"));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.CommitmentMismatch.selector, id));
        oracle.fulfill(r, forged, sign(SIGNER_KEY, r));
    }

    function test_rejects_after_deadline() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        vm.warp(c.deadline + 1);
        Response memory r = success(id, c, abi.encode("x"));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.RequestExpired.selector, id));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
    }

    function test_rejects_inconsistent_status() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("x"));
        r.reasonCode = uint16(ReasonCode.Malformed); // success with a reason
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.InvalidStatus.selector, id));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        r = failure(id, c, ReasonCode.None); // failure without a reason
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.InvalidStatus.selector, id));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        r = success(id, c, "");
        r.status = 0; // zero is never a status
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.InvalidStatus.selector, id));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        r = failure(id, c, ReasonCode.Malformed);
        r.reasonCode = uint16(type(ReasonCode).max) + 1; // unknown reason
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.InvalidStatus.selector, id));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
    }

    function test_rejects_result_above_limit() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, new bytes(4_096 + 97));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.ResultTooLarge.selector, id));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
    }

    function test_commitment_carries_the_requests_result_bound() public {
        (, Commitment memory text) = request(textParams(address(consumer))); // maxBytes 1,024
        assertEq(text.maxResultBytes, 1_024 + 96, "text: its size plus the ABI framing");
        (, Commitment memory word) = request(uintParams(address(consumer), 0, 100));
        assertEq(word.maxResultBytes, 32, "uint: one word");
    }

    function test_rejects_result_above_the_requests_own_size() public {
        // maxBytes 1,024: the string's encoding may take 1,024 + 96 bytes, not the oracle's 4,096 + 96
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, new bytes(1_024 + 97));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.ResultTooLarge.selector, id));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        r = success(id, c, new bytes(1_024 + 96)); // at the bound: accepted
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        assertEq(consumer.calls(), 1, "delivered");
    }

    function test_rejects_a_one_word_result_longer_than_a_word() public {
        (bytes32 id, Commitment memory c) = request(uintParams(address(consumer), 0, 100));
        Response memory r = success(id, c, abi.encode(uint256(1), uint256(2)));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.ResultTooLarge.selector, id));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
    }

    function test_a_commitment_word_with_dirty_high_bits_does_not_match() public {
        (bytes32 id, Commitment memory c) = request(uintParams(address(consumer), 0, 100));
        Response memory r = success(id, c, abi.encode(uint256(7)));
        bytes memory data = abi.encodeCall(IAIOracle.fulfill, (r, c, sign(SIGNER_KEY, r)));
        // fulfill(Response, Commitment, bytes): the static Commitment sits inline after the Response's offset
        // word; its fifth word is maxResultBytes, a uint64: set a bit above it
        data[4 + 32 + 4 * 32] = 0x01;
        (bool ok, bytes memory err) = address(oracle).call(data);
        assertTrue(!ok, "dirty commitment accepted");
        assertEq(err, abi.encodeWithSelector(IAIOracleErrors.CommitmentMismatch.selector, id), "as a mismatch");
        assertTrue(oracle.commitments(id) != bytes32(0), "still open");
    }

    function test_a_raised_bound_in_the_commitment_does_not_match() public {
        (bytes32 id, Commitment memory c) = request(uintParams(address(consumer), 0, 100));
        c.maxResultBytes = 4_096 + 96;
        Response memory r = success(id, c, new bytes(2_000));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.CommitmentMismatch.selector, id));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
    }

    function test_callback_receives_exactly_its_gas_limit() public {
        RequestParams memory p = textParams(address(consumer));
        p.callbackGasLimit = 400_000;
        (bytes32 id, Commitment memory c) = request(p);
        Response memory r = success(id, c, abi.encode("x"));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        uint256 atEntry = consumer.gasAtEntry();
        assertLe(atEntry, 400_000, "never more than asked");
        assertGe(atEntry, 400_000 - 1_000, "all of it, less the callee's own prologue");
    }

    function test_too_little_gas_for_the_callback_reverts_the_fulfillment() public {
        RequestParams memory p = textParams(address(consumer));
        p.callbackGasLimit = 1_000_000;
        (bytes32 id, Commitment memory c) = request(p);
        Response memory r = success(id, c, abi.encode("x"));
        bytes memory sig = sign(SIGNER_KEY, r);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.InsufficientGasForCallback.selector, id));
        oracle.fulfill{gas: 900_000}(r, c, sig);
        assertTrue(oracle.commitments(id) != bytes32(0), "still open");
        oracle.fulfill{gas: 1_200_000}(r, c, sig);
        assertEq(oracle.commitments(id), bytes32(0), "fulfilled with enough gas");
    }

    function _settlesDespite(address hostile) private {
        RequestParams memory p = textParams(hostile);
        p.callbackGasLimit = 200_000;
        (bytes32 id, Commitment memory c) = request(p);
        Response memory r = success(id, c, abi.encode("x"));
        vm.recordLogs();
        oracle.fulfill{gas: 1_000_000}(r, c, sign(SIGNER_KEY, r));
        Vm.Log[] memory logs = vm.getRecordedLogs();
        (,,,, bool ok) = abi.decode(logs[logs.length - 1].data, (uint8, uint16, bytes32, bytes32, bool));
        assertTrue(!ok, "callback failure reported");
        assertEq(oracle.commitments(id), bytes32(0), "settled");
        assertEq(oracle.balanceOf(PAYEE), c.fee, "payee credited");
    }

    function test_reverting_callback_still_settles() public {
        _settlesDespite(address(new RevertingConsumer()));
    }

    function test_gas_burning_callback_still_settles() public {
        _settlesDespite(address(new GasBurningConsumer()));
    }

    function test_huge_return_data_is_not_copied() public {
        _settlesDespite(address(new HugeReturnConsumer(true)));
        // a successful call returning 200 KB: the fulfillment stays cheap because nothing is copied
        HugeReturnConsumer returning = new HugeReturnConsumer(false);
        RequestParams memory p = textParams(address(returning));
        p.callbackGasLimit = 200_000;
        (bytes32 id, Commitment memory c) = request(p);
        Response memory r = success(id, c, abi.encode("x"));
        bytes memory sig = sign(SIGNER_KEY, r);
        uint256 before = gasleft();
        oracle.fulfill(r, c, sig);
        assertLe(before - gasleft(), 200_000 + 80_000, "no return-data copy cost");
    }

    function test_callback_to_address_without_code_settles_as_failed_callback() public {
        _settlesDespite(address(0xC0FFEE));
    }

    function test_reentering_consumer_cannot_double_settle() public {
        ReentrantConsumer reentrant = new ReentrantConsumer(oracle);
        RequestParams memory p = textParams(address(reentrant));
        p.callbackGasLimit = 500_000;
        (bytes32 id, Commitment memory c) = request(p);
        Response memory r = success(id, c, abi.encode("x"));
        bytes memory sig = sign(SIGNER_KEY, r);
        reentrant.arm(r, c, sig);
        vm.warp(c.deadline); // still fulfillable; a cancel inside would need deadline < now anyway
        oracle.fulfill(r, c, sig);
        assertEq(reentrant.calls(), 1, "one callback");
        assertTrue(!reentrant.reentrySucceeded(), "re-entry refused");
        assertEq(oracle.balanceOf(PAYEE), c.fee, "paid once");
        assertEq(oracle.balanceOf(REQUESTER), 0, "no refund");
    }

    function test_relayer_never_receives_the_fee() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("x"));
        uint256 relayerBefore = RELAYER.balance;
        vm.prank(RELAYER);
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        assertEq(RELAYER.balance, relayerBefore, "relayer ETH unchanged");
        assertEq(oracle.balanceOf(RELAYER), 0, "nothing credited to relayer");
        vm.prank(RELAYER);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.NothingToWithdraw.selector));
        oracle.withdraw(payable(RELAYER));
        vm.prank(PAYEE);
        oracle.withdraw(payable(PAYEE));
        assertEq(PAYEE.balance, c.fee, "payee withdrew the fee");
    }

    function test_fulfill_while_paused_reverts() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        vm.prank(OWNER);
        oracle.setPaused(true);
        Response memory r = success(id, c, abi.encode("x"));
        bytes memory sig = sign(SIGNER_KEY, r);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.OraclePaused.selector));
        oracle.fulfill(r, c, sig);
    }

    function test_contract_digest_matches_spec_digest() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("x"));
        assertEq(oracle.responseDigest(r), responseDigest(r, block.chainid, address(oracle)), "digest");
    }
}

contract AIOracleBatchTest is OracleTestBase {
    function _batch(uint256 n)
        internal
        returns (Response[] memory rs, Commitment[] memory cs, bytes[] memory sigs)
    {
        rs = new Response[](n);
        cs = new Commitment[](n);
        sigs = new bytes[](n);
        for (uint256 i = 0; i < n; ++i) {
            (bytes32 id, Commitment memory c) = request(uintParams(address(consumer), 0, 100));
            rs[i] = success(id, c, abi.encode(i));
            cs[i] = c;
            sigs[i] = sign(SIGNER_KEY, rs[i]);
        }
    }

    function test_batch_fulfills_all() public {
        (Response[] memory rs, Commitment[] memory cs, bytes[] memory sigs) = _batch(5);
        assertEq(oracle.fulfillBatch(rs, cs, sigs), 5, "five applied");
        assertEq(consumer.calls(), 5, "five callbacks");
        assertEq(oracle.balanceOf(PAYEE), cs[0].fee * 5, "five fees");
    }

    function test_batch_skips_settled_and_bad_items_without_sinking_the_rest() public {
        (Response[] memory rs, Commitment[] memory cs, bytes[] memory sigs) = _batch(4);
        oracle.fulfill(rs[1], cs[1], sigs[1]); // someone relayed item 1 first
        sigs[2] = sign(OTHER_KEY, rs[2]); // item 2 signed by a stranger
        vm.recordLogs();
        assertEq(oracle.fulfillBatch(rs, cs, sigs), 2, "two applied");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 skipped;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].topics[0] != IAIOracle.FulfillmentSkipped.selector) continue;
            bytes4 reason = abi.decode(logs[i].data, (bytes4));
            if (logs[i].topics[1] == rs[1].requestId) assertEq(reason, IAIOracleErrors.UnknownRequest.selector, "1");
            else if (logs[i].topics[1] == rs[2].requestId) assertEq(reason, IAIOracleErrors.UnauthorizedSigner.selector, "2");
            else fail("unexpected skip");
            ++skipped;
        }
        assertEq(skipped, 2, "two skips");
        assertTrue(oracle.commitments(rs[2].requestId) != bytes32(0), "item 2 still open");
    }

    function test_batch_skips_a_result_above_its_requests_size() public {
        (Response[] memory rs, Commitment[] memory cs, bytes[] memory sigs) = _batch(3);
        rs[1].result = abi.encode(uint256(1), uint256(2)); // a uint request: one word at most
        sigs[1] = sign(SIGNER_KEY, rs[1]);
        vm.recordLogs();
        assertEq(oracle.fulfillBatch(rs, cs, sigs), 2, "the other two applied");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 skipped;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].topics[0] != IAIOracle.FulfillmentSkipped.selector) continue;
            assertEq(logs[i].topics[1], rs[1].requestId, "item 1 skipped");
            assertEq(abi.decode(logs[i].data, (bytes4)), IAIOracleErrors.ResultTooLarge.selector, "as too large");
            ++skipped;
        }
        assertEq(skipped, 1, "one skip");
        assertTrue(oracle.commitments(rs[1].requestId) != bytes32(0), "item 1 still open");
    }

    function test_batch_same_request_twice_settles_once() public {
        (Response[] memory rs, Commitment[] memory cs, bytes[] memory sigs) = _batch(2);
        rs[1] = rs[0];
        cs[1] = cs[0];
        sigs[1] = sigs[0];
        assertEq(oracle.fulfillBatch(rs, cs, sigs), 1, "one applied");
        assertEq(oracle.balanceOf(PAYEE), cs[0].fee, "one fee");
    }

    function test_batch_length_mismatch_and_size() public {
        (Response[] memory rs, Commitment[] memory cs,) = _batch(2);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.LengthMismatch.selector));
        oracle.fulfillBatch(rs, cs, new bytes[](1));
        uint256 n = oracle.MAX_BATCH() + 1;
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.BatchTooLarge.selector, n, n - 1));
        oracle.fulfillBatch(new Response[](n), new Commitment[](n), new bytes[](n));
    }
}

contract AIOracleCancelTest is OracleTestBase {
    function test_cancel_after_deadline_refunds_requester() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        vm.warp(c.deadline + 1);
        vm.prank(REQUESTER);
        oracle.cancel(id, c);
        assertEq(oracle.balanceOf(REQUESTER), c.fee, "refund credited");
        assertEq(oracle.commitments(id), bytes32(0), "closed");
        uint256 before = REQUESTER.balance;
        vm.prank(REQUESTER);
        oracle.withdraw(payable(REQUESTER));
        assertEq(REQUESTER.balance - before, c.fee, "refund withdrawn");
    }

    function test_cancel_before_deadline_reverts() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        vm.warp(c.deadline);
        vm.prank(REQUESTER);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.NotExpired.selector, id, c.deadline));
        oracle.cancel(id, c);
    }

    function test_only_the_requester_cancels() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        vm.warp(c.deadline + 1);
        vm.prank(RELAYER);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.NotRequester.selector, id, RELAYER));
        oracle.cancel(id, c);
    }

    function test_cancel_after_fulfill_reverts_and_vice_versa() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        Response memory r = success(id, c, abi.encode("x"));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        vm.warp(c.deadline + 1);
        vm.prank(REQUESTER);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.UnknownRequest.selector, id));
        oracle.cancel(id, c);

        (bytes32 id2, Commitment memory c2) = request(textParams(address(consumer)));
        vm.warp(c2.deadline + 1);
        vm.prank(REQUESTER);
        oracle.cancel(id2, c2);
        Response memory r2 = success(id2, c2, abi.encode("x"));
        bytes memory sig2 = sign(SIGNER_KEY, r2);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.UnknownRequest.selector, id2));
        oracle.fulfill(r2, c2, sig2);
        vm.prank(REQUESTER);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.UnknownRequest.selector, id2));
        oracle.cancel(id2, c2);
    }

    function test_cancel_with_forged_commitment_reverts() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        vm.warp(c.deadline + 1);
        Commitment memory forged = c;
        forged.requester = RELAYER;
        vm.prank(RELAYER);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.CommitmentMismatch.selector, id));
        oracle.cancel(id, forged);
    }

    function test_cancel_works_while_paused() public {
        (bytes32 id, Commitment memory c) = request(textParams(address(consumer)));
        vm.prank(OWNER);
        oracle.setPaused(true);
        vm.warp(c.deadline + 1);
        vm.prank(REQUESTER);
        oracle.cancel(id, c);
        assertEq(oracle.balanceOf(REQUESTER), c.fee, "refund while paused");
    }
}

contract AIOracleAdminTest is OracleTestBase {
    function test_only_owner_administers() public {
        bytes memory err = abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, RELAYER);
        vm.startPrank(RELAYER);
        vm.expectRevert(err);
        oracle.setSigner(RELAYER, RELAYER);
        vm.expectRevert(err);
        oracle.removeSigner(signer);
        vm.expectRevert(err);
        oracle.setFeeSchedule(0, FeeSchedule(0, 0, 0));
        vm.expectRevert(err);
        oracle.setLimits(defaultLimits());
        vm.expectRevert(err);
        oracle.setPaused(true);
        vm.stopPrank();
    }

    function test_two_step_ownership() public {
        vm.prank(OWNER);
        oracle.transferOwnership(RELAYER);
        assertEq(oracle.owner(), OWNER, "not yet");
        vm.prank(RELAYER);
        oracle.acceptOwnership();
        assertEq(oracle.owner(), RELAYER, "accepted");
    }

    function test_admin_changes_emit_events() public {
        vm.recordLogs();
        vm.startPrank(OWNER);
        oracle.setSigner(address(0x51), address(0x52));
        oracle.removeSigner(address(0x51));
        oracle.setFeeSchedule(4, FeeSchedule(1, 2, 3));
        oracle.setLimits(defaultLimits());
        oracle.setPaused(true);
        vm.stopPrank();
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 5, "five events");
        assertEq(logs[0].topics[0], IAIOracle.SignerSet.selector, "SignerSet");
        assertEq(logs[1].topics[0], IAIOracle.SignerRemoved.selector, "SignerRemoved");
        assertEq(logs[2].topics[0], IAIOracle.FeeScheduleSet.selector, "FeeScheduleSet");
        assertEq(logs[3].topics[0], IAIOracle.LimitsSet.selector, "LimitsSet");
        assertEq(logs[4].topics[0], IAIOracle.PausedSet.selector, "PausedSet");
        assertTrue(oracle.paused(), "paused");
    }

    function test_admin_input_checks() public {
        vm.startPrank(OWNER);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.InvalidPayee.selector));
        oracle.setSigner(address(0x51), address(0));
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.UnknownPolicyClass.selector, 5));
        oracle.setFeeSchedule(5, FeeSchedule(1, 2, 3));
        Limits memory l = defaultLimits();
        l.maxChoiceLabels = 1;
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.InvalidLimits.selector));
        oracle.setLimits(l);
        vm.stopPrank();
    }

    function test_set_limits_keeps_pause_state() public {
        vm.startPrank(OWNER);
        oracle.setPaused(true);
        Limits memory l = defaultLimits();
        l.maxPromptBytes = 100;
        oracle.setLimits(l);
        vm.stopPrank();
        assertTrue(oracle.paused(), "still paused");
        assertEq(uint256(oracle.limits().maxPromptBytes), 100, "limit changed");
    }
}
