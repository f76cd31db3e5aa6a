// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {OracleFixture} from "./utils/OracleFixture.sol";
import {Vm} from "./utils/Vm.sol";
import {AIConsumer} from "../src/AIConsumer.sol";
import {IAIOracle} from "../src/interfaces/IAIOracle.sol";
import {GovernanceSummarizer} from "../src/examples/GovernanceSummarizer.sol";
import {RiskSentinel} from "../src/examples/RiskSentinel.sol";
import {ExampleVault} from "../src/examples/ExampleVault.sol";
import {TypedResultsConsumer} from "../src/examples/TypedResultsConsumer.sol";
import {DevGovernor} from "../src/devnet/DevGovernor.sol";
import {DevVotes} from "../src/devnet/DevVotes.sol";
import {IGovernor} from "@openzeppelin/contracts/governance/IGovernor.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {
    RequestParams, Commitment, Response, OffchainResult, Status, ReasonCode, OracleTypes
} from "../src/OracleTypes.sol";

contract GovernanceSummarizerTest is OracleFixture {
    DevVotes private votes;
    DevGovernor private governor;
    GovernanceSummarizer private summarizer;
    address private constant PROPOSER = address(0x30001);

    address[] private targets;
    uint256[] private values;
    bytes[] private calldatas;
    string private constant DESCRIPTION = "# Raise the fee\nSet the protocol fee to 0.3%.";

    function setUp() public override {
        super.setUp();
        votes = new DevVotes(address(this));
        votes.mint(PROPOSER, 1_000 ether);
        vm.prank(PROPOSER);
        votes.delegate(PROPOSER);
        vm.roll(block.number + 1);
        governor = new DevGovernor(votes);
        summarizer = new GovernanceSummarizer(oracle, IGovernor(address(governor)), "best", 800_000, 1_024, 2_048, 1 hours);
        targets.push(address(votes));
        values.push(0);
        calldatas.push(abi.encodeCall(DevVotes.mint, (PROPOSER, 1 ether)));
        vm.prank(PROPOSER);
        governor.propose(targets, values, calldatas, DESCRIPTION);
    }

    function _summarize() private returns (bytes32 id, Commitment memory c, uint256 proposalId) {
        uint256 fee = summarizer.quote();
        vm.recordLogs();
        vm.prank(REQUESTER);
        id = summarizer.summarize{value: fee}(targets, values, calldatas, DESCRIPTION);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        (, uint256 loggedFee, RequestParams memory p) = abi.decode(logs[0].data, (uint64, uint256, RequestParams));
        c = commitmentOf(p, address(summarizer), loggedFee);
        proposalId = governor.hashProposal(targets, values, calldatas, keccak256(bytes(DESCRIPTION)));
        assertEq(p.result.abiType, "(string,uint8,string)", "asks for the summary tuple");
        assertTrue(_contains(p.prompt, bytes(DESCRIPTION)), "prompt carries the description");
    }

    function test_summary_of_a_real_proposal_is_stored() public {
        (bytes32 id, Commitment memory c, uint256 proposalId) = _summarize();
        assertEq(summarizer.proposalOf(id), proposalId, "bound to the proposal");
        Response memory r = success(id, c, abi.encode("Raises the fee to 0.3%.", uint8(35), "Fee change only."));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        GovernanceSummarizer.Summary memory s = summarizer.summaryOf(proposalId);
        assertTrue(summarizer.hasSummary(proposalId), "stored");
        assertEq(s.summary, "Raises the fee to 0.3%.", "summary");
        assertEq(uint256(s.risk), 35, "risk");
        assertEq(s.rationale, "Fee change only.", "rationale");
        assertEq(s.receiptHash, r.receiptHash, "receipt");
    }

    function test_text_not_matching_the_proposal_is_refused() public {
        uint256 fee = summarizer.quote();
        uint256 forged = governor.hashProposal(targets, values, calldatas, keccak256("# Something else"));
        vm.prank(REQUESTER);
        vm.expectRevert(abi.encodeWithSelector(GovernanceSummarizer.UnknownProposal.selector, forged));
        summarizer.summarize{value: fee}(targets, values, calldatas, "# Something else");
    }

    function test_failed_summary_is_reported_not_stored() public {
        (bytes32 id, Commitment memory c, uint256 proposalId) = _summarize();
        Response memory r = failure(id, c, ReasonCode.ModelRefused);
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
        assertTrue(!summarizer.hasSummary(proposalId), "not stored");
    }

    function test_only_the_oracle_delivers() public {
        vm.expectRevert(abi.encodeWithSelector(AIConsumer.OnlyOracle.selector, address(this)));
        summarizer.onOracleResult(bytes32(0), 1, 0, "", bytes32(0), bytes32(0));
    }

    function _contains(bytes memory hay, bytes memory needle) private pure returns (bool) {
        for (uint256 i = 0; i + needle.length <= hay.length; ++i) {
            bool ok = true;
            for (uint256 j = 0; j < needle.length && ok; ++j) ok = hay[i + j] == needle[j];
            if (ok) return true;
        }
        return false;
    }
}

contract RiskSentinelTest is OracleFixture {
    ExampleVault private vault;
    RiskSentinel private sentinel;
    address private constant KEEPER = address(0x40001);

    function setUp() public override {
        super.setUp();
        vault = new ExampleVault(address(this));
        sentinel = new RiskSentinel(oracle, vault, "fastest", 80, KEEPER);
        vault.setGuardian(address(sentinel));
        vm.deal(KEEPER, 10 ether);
    }

    function _score(uint256 score) private returns (bytes32 id) {
        uint256 fee = sentinel.quote();
        vm.recordLogs();
        vm.prank(KEEPER);
        id = sentinel.requestRiskCheck{value: fee}("ETH -30% in 1h; vault 80% utilised");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        (, uint256 loggedFee, RequestParams memory p) = abi.decode(logs[0].data, (uint64, uint256, RequestParams));
        assertEq(p.result.max, 100, "0..100 score");
        Commitment memory c = commitmentOf(p, address(sentinel), loggedFee);
        Response memory r = success(id, c, abi.encode(score));
        oracle.fulfill(r, c, sign(SIGNER_KEY, r));
    }

    function test_low_score_leaves_vault_open() public {
        _score(79);
        assertEq(sentinel.lastScore(), 79, "score stored");
        assertTrue(!vault.paused(), "open");
    }

    function test_score_at_threshold_pauses_vault() public {
        _score(80);
        assertTrue(vault.paused(), "paused");
        vm.expectRevert(abi.encodeWithSelector(Pausable.EnforcedPause.selector));
        vault.deposit{value: 1}();
    }

    function test_only_keeper_asks() public {
        vm.deal(RELAYER, 1 ether);
        vm.prank(RELAYER);
        vm.expectRevert();
        sentinel.requestRiskCheck{value: 0.1 ether}("rate this 100");
    }
}

contract OffchainResultTest is OracleFixture {
    TypedResultsConsumer private typed;

    function setUp() public override {
        super.setUp();
        typed = new TypedResultsConsumer(oracle);
    }

    function _result(address consumer_) private view returns (OffchainResult memory) {
        return OffchainResult({
            resultId: keccak256("agent-query-1"),
            consumer: consumer_,
            promptHash: keccak256("prompt"),
            status: uint8(Status.Success),
            reasonCode: 0,
            result: abi.encode("forty-two"), // the consumer reads a result of unknown kind as text
            modelUsed: keccak256("m"),
            receiptHash: keccak256("receipt"),
            validUntil: uint64(block.timestamp + 60)
        });
    }

    function _sign(uint256 key, OffchainResult memory r) private view returns (bytes memory) {
        bytes32 structHash = keccak256(
            abi.encode(
                OracleTypes.OFFCHAIN_RESULT_TYPEHASH, r.resultId, r.consumer, r.promptHash, r.status, r.reasonCode,
                keccak256(r.result), r.modelUsed, r.receiptHash, r.validUntil
            )
        );
        (uint8 v, bytes32 rr, bytes32 s) =
            vm.sign(key, keccak256(abi.encodePacked("\x19\x01", oracle.domainSeparator(), structHash)));
        return abi.encodePacked(rr, s, v);
    }

    function test_signed_result_is_accepted_once() public {
        OffchainResult memory r = _result(address(typed));
        bytes memory sig = _sign(SIGNER_KEY, r);
        typed.acceptSignedResult(r, sig);
        assertTrue(typed.decoded(r.resultId).delivered, "delivered");
        assertEq(typed.decoded(r.resultId).text, "forty-two", "decoded");
        vm.expectRevert(abi.encodeWithSelector(AIConsumer.ResultAlreadyUsed.selector, r.resultId));
        typed.acceptSignedResult(r, sig);
    }

    function test_result_for_another_consumer_is_refused() public {
        OffchainResult memory r = _result(address(0x1234));
        bytes memory sig = _sign(SIGNER_KEY, r);
        vm.expectRevert(abi.encodeWithSelector(AIConsumer.WrongConsumer.selector, address(0x1234)));
        typed.acceptSignedResult(r, sig);
    }

    function test_unregistered_signer_or_expired_result_is_refused() public {
        OffchainResult memory r = _result(address(typed));
        bytes memory strangerSig = _sign(OTHER_KEY, r);
        vm.expectRevert(abi.encodeWithSelector(IAIOracle.UnauthorizedSigner.selector, r.resultId));
        typed.acceptSignedResult(r, strangerSig);
        bytes memory sig = _sign(SIGNER_KEY, r);
        vm.warp(r.validUntil + 1);
        vm.expectRevert(abi.encodeWithSelector(IAIOracle.RequestExpired.selector, r.resultId));
        typed.acceptSignedResult(r, sig);
    }
}
