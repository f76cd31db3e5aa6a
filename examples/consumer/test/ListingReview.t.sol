// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {OracleFixture} from "ai-oracle-kit/OracleFixture.sol";
import {IAIOracleErrors} from "ai-oracle/interfaces/IAIOracleErrors.sol";
import {ResultType, ReasonCode, Status} from "ai-oracle/OracleTypes.sol";
import {ListingReview} from "../src/ListingReview.sol";

/// @notice ListingReview against a real AIOracle deployed by the kit: each question is asked with the
/// right result type, each answer is decoded and kept, and an unanswered question's fee goes back.
contract ListingReviewTest is OracleFixture {
    ListingReview private review;
    address private constant ASKER = address(0x40001);
    address private constant KEEPER = address(0x40002);
    string private constant LISTING = "TKN: 1B supply, 90% held by the deployer, no audit.";

    function setUp() public override {
        super.setUp(); // the oracle, its signer and fees
        review = new ListingReview(oracle, "cheapest;max_price=20000", 1 hours);
        vm.deal(ASKER, 10 ether);
    }

    function _ask(ListingReview.Question question) private returns (OracleRequest memory r) {
        uint256 fee = review.quote();
        recordRequests();
        vm.prank(ASKER);
        if (question == ListingReview.Question.Legitimate) {
            review.askLegitimate{value: fee}(LISTING);
        } else if (question == ListingReview.Question.Risk) {
            review.askRisk{value: fee}(LISTING);
        } else {
            review.askTier{value: fee}(LISTING);
        }
        r = takeRequest();
        assertEq(r.requester, address(review), "asked by the consumer");
        assertEq(r.commitment.fee, fee, "fee escrowed");
    }

    function _stored(bytes32 id) private view returns (bool answered, uint8 status, uint16 reason, uint256 value) {
        (, answered, status, reason, value) = review.reviews(id);
    }

    function test_asks_a_bool_and_keeps_the_answer() public {
        OracleRequest memory r = _ask(ListingReview.Question.Legitimate);
        assertEq(uint256(r.params.result.kind), uint256(ResultType.Bool), "a bool");
        fulfillSuccess(r, abi.encode(true));
        (bool answered, uint8 status,, uint256 value) = _stored(r.id);
        assertTrue(answered, "answered");
        assertEq(uint256(status), uint256(Status.Success), "success");
        assertEq(value, 1, "true");
    }

    function test_asks_a_risk_from_0_to_100_and_keeps_the_answer() public {
        OracleRequest memory r = _ask(ListingReview.Question.Risk);
        assertEq(uint256(r.params.result.kind), uint256(ResultType.Uint), "a uint");
        assertEq(r.params.result.min, 0, "from 0");
        assertEq(r.params.result.max, 100, "to 100");
        fulfillSuccess(r, abi.encode(uint256(87)));
        (,,, uint256 value) = _stored(r.id);
        assertEq(value, 87, "risk");
    }

    function test_asks_a_tier_among_labels_and_keeps_the_answer() public {
        OracleRequest memory r = _ask(ListingReview.Question.Tier);
        assertEq(uint256(r.params.result.kind), uint256(ResultType.Choice), "a choice");
        assertEq(r.params.result.labels.length, 3, "three labels");
        assertEq(r.params.result.labels[1], "watch", "labels in order");
        fulfillSuccess(r, abi.encode(uint256(1)));
        (,,, uint256 value) = _stored(r.id);
        assertEq(review.tiers()[value], "watch", "the chosen label");
    }

    function test_a_failure_is_kept_with_its_reason() public {
        OracleRequest memory r = _ask(ListingReview.Question.Risk);
        fulfillFailure(r, ReasonCode.PriceCapTooLow);
        (bool answered, uint8 status, uint16 reason, uint256 value) = _stored(r.id);
        assertTrue(answered, "answered");
        assertEq(uint256(status), uint256(Status.Failure), "failure");
        assertEq(uint256(reason), uint256(ReasonCode.PriceCapTooLow), "why");
        assertEq(value, 0, "no value");
    }

    function test_an_unanswered_fee_is_reclaimed_after_the_deadline() public {
        OracleRequest memory r = _ask(ListingReview.Question.Tier);
        warpPastDeadline(r);
        uint256 before = ASKER.balance;
        reclaimTo(review, r, ASKER, payable(ASKER)); // the payer names where the fee goes
        assertEq(ASKER.balance - before, r.commitment.fee, "refunded");
        (bool answered,,,) = _stored(r.id);
        assertTrue(!answered, "never answered");
    }

    function test_anyone_may_reclaim_for_the_payer_who_withdraws() public {
        OracleRequest memory r = _ask(ListingReview.Question.Legitimate);
        warpPastDeadline(r);
        reclaim(review, r, KEEPER);
        assertEq(review.refundOf(ASKER), r.commitment.fee, "credited to the payer");
        uint256 before = ASKER.balance;
        vm.prank(ASKER);
        review.withdrawRefund(payable(ASKER));
        assertEq(ASKER.balance - before, r.commitment.fee, "withdrawn");
    }

    function test_a_fee_below_the_quote_reverts_with_the_oracles_error() public {
        uint256 fee = review.quote();
        vm.prank(ASKER);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.FeeBelowQuote.selector, fee - 1, fee));
        review.askRisk{value: fee - 1}(LISTING);
    }
}
