// SPDX-License-Identifier: MIT
pragma solidity ^0.8.26;

import {OracleTestBase} from "./utils/OracleTestBase.sol";
import {PlainConsumer, EthRefusingPayer} from "./utils/Consumers.sol";
import {AIConsumer} from "../src/AIConsumer.sol";
import {IAIOracleErrors} from "../src/interfaces/IAIOracleErrors.sol";
import {RequestParams, FeeSchedule, PolicyClass, ReasonCode} from "../src/OracleTypes.sol";

/// @notice Reclaiming the fee of a request nobody answered, through AIConsumer: the fee always reaches
/// the payer (now or credited), never another payer, and a payer that refuses ETH never locks it.
contract AIConsumerReclaimTest is OracleTestBase {
    PlainConsumer private plain;
    EthRefusingPayer private refusing;
    address private constant KEEPER = address(0x20001);
    address private constant ALICE = address(0x20002);
    address payable private constant COLD_WALLET = payable(address(0x20003));

    function setUp() public override {
        super.setUp();
        plain = new PlainConsumer(oracle);
        refusing = new EthRefusingPayer();
        vm.deal(address(refusing), 10 ether);
        vm.deal(ALICE, 10 ether);
    }

    function _params() private view returns (RequestParams memory) {
        return uintParams(address(plain), 0, 100);
    }

    /// @dev `payer` asks through the consumer, paying the quote plus `extra`.
    function _ask(address payer, uint256 extra) private returns (OracleRequest memory r) {
        RequestParams memory p = _params();
        uint256 fee = quoteOf(p) + extra;
        recordRequests();
        vm.prank(payer);
        if (payer == address(refusing)) {
            refusing.ask{value: fee}(plain, p);
        } else {
            plain.ask{value: fee}(p);
        }
        r = takeRequest();
        assertEq(plain.payerOf(r.id), payer, "payer remembered");
    }

    function test_anyones_reclaim_credits_the_payer_who_withdraws_later() public {
        OracleRequest memory r = _ask(address(refusing), 0);
        warpPastDeadline(r);
        reclaim(plain, r, KEEPER); // would have failed sending to a payer that refuses ETH
        assertEq(plain.refundOf(address(refusing)), r.commitment.fee, "credited");
        assertEq(plain.refundsOwed(), r.commitment.fee, "owed");
        assertEq(address(plain).balance, r.commitment.fee, "held by the consumer");
        assertEq(plain.payerOf(r.id), address(0), "no longer open");

        refusing.withdrawRefund(plain, COLD_WALLET);
        assertEq(COLD_WALLET.balance, r.commitment.fee, "withdrawn to the recipient it named");
        assertEq(plain.refundOf(address(refusing)), 0, "credit spent");
        assertEq(plain.refundsOwed(), 0, "nothing owed");
        assertEq(address(plain).balance, 0, "nothing left behind");
    }

    function test_payer_that_refuses_eth_reclaims_to_a_recipient_it_names() public {
        OracleRequest memory r = _ask(address(refusing), 0);
        warpPastDeadline(r);
        refusing.reclaimTo(plain, r.id, r.commitment, COLD_WALLET);
        assertEq(COLD_WALLET.balance, r.commitment.fee, "sent at once");
        assertEq(plain.refundsOwed(), 0, "nothing credited");
        assertEq(address(oracle).balance, 0, "nothing left in escrow");
    }

    function test_payer_reclaims_to_itself() public {
        OracleRequest memory r = _ask(ALICE, 0);
        uint256 before = ALICE.balance;
        warpPastDeadline(r);
        reclaimTo(plain, r, ALICE, payable(ALICE));
        assertEq(ALICE.balance - before, r.commitment.fee, "refunded");
    }

    function test_only_the_payer_names_a_recipient() public {
        OracleRequest memory r = _ask(ALICE, 0);
        warpPastDeadline(r);
        vm.prank(KEEPER);
        vm.expectRevert(abi.encodeWithSelector(AIConsumer.NotPayer.selector, r.id, KEEPER));
        plain.reclaimFee(r.id, r.commitment, payable(KEEPER));
    }

    function test_a_recipient_that_refuses_eth_changes_nothing() public {
        OracleRequest memory r = _ask(ALICE, 0);
        warpPastDeadline(r);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.WithdrawFailed.selector, address(refusing)));
        plain.reclaimFee(r.id, r.commitment, payable(address(refusing)));
        assertEq(plain.payerOf(r.id), ALICE, "still open");
        // another recipient works
        reclaimTo(plain, r, ALICE, COLD_WALLET);
        assertEq(COLD_WALLET.balance, r.commitment.fee, "sent to the second recipient");
    }

    function test_a_refund_is_never_sent_to_the_zero_address() public {
        OracleRequest memory r = _ask(ALICE, 0);
        warpPastDeadline(r);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(AIConsumer.InvalidRecipient.selector));
        plain.reclaimFee(r.id, r.commitment, payable(address(0)));
        reclaim(plain, r, KEEPER);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(AIConsumer.InvalidRecipient.selector));
        plain.withdrawRefund(payable(address(0)));
    }

    function test_one_payers_reclaim_never_takes_anothers_refund() public {
        OracleRequest memory a = _ask(address(refusing), 1 ether); // the larger refund, left credited
        OracleRequest memory b = _ask(ALICE, 0);
        warpPastDeadline(b);
        reclaim(plain, a, KEEPER);
        uint256 before = ALICE.balance;
        reclaimTo(plain, b, ALICE, payable(ALICE));
        assertEq(ALICE.balance - before, b.commitment.fee, "exactly her own fee");
        assertEq(plain.refundOf(address(refusing)), a.commitment.fee, "the other credit untouched");
        assertEq(address(plain).balance, plain.refundsOwed(), "the consumer holds exactly what it owes");
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.NothingToWithdraw.selector));
        plain.withdrawRefund(payable(ALICE));
    }

    function test_requests_never_spend_refunds_held_for_payers() public {
        OracleRequest memory r = _ask(address(refusing), 0);
        warpPastDeadline(r);
        reclaim(plain, r, KEEPER);
        RequestParams memory p = _params();
        uint256 fee = quoteOf(p);
        vm.expectRevert(
            abi.encodeWithSelector(AIConsumer.RefundsReserved.selector, r.commitment.fee, fee, r.commitment.fee)
        );
        plain.askFromBalance(p, fee, ALICE);
        // ETH of its own beyond what it owes may be spent
        vm.deal(address(plain), address(plain).balance + fee);
        plain.askFromBalance(p, fee, ALICE);
        assertEq(address(plain).balance, plain.refundsOwed(), "refunds still covered");
    }

    function test_reclaim_before_the_deadline_is_refused_by_the_oracle() public {
        OracleRequest memory r = _ask(ALICE, 0);
        vm.warp(r.commitment.deadline); // fulfillment is still allowed at the deadline itself
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.NotExpired.selector, r.id, r.commitment.deadline));
        reclaim(plain, r, KEEPER);
        assertEq(plain.payerOf(r.id), ALICE, "still open");
    }

    function test_answered_or_reclaimed_requests_cannot_be_reclaimed() public {
        OracleRequest memory answered = _ask(ALICE, 0);
        fulfillFailure(answered, ReasonCode.ModelRefused);
        assertEq(plain.delivered(), 1, "delivered");
        OracleRequest memory reclaimed = _ask(ALICE, 0);
        warpPastDeadline(reclaimed);
        reclaim(plain, reclaimed, KEEPER);
        for (uint256 i = 0; i < 2; ++i) {
            OracleRequest memory r = i == 0 ? answered : reclaimed;
            vm.expectRevert(abi.encodeWithSelector(AIConsumer.UnexpectedResult.selector, r.id));
            plain.reclaimFee(r.id, r.commitment);
        }
    }

    function test_a_request_with_a_zero_fee_reclaims_to_nothing() public {
        vm.prank(OWNER);
        oracle.setFeeSchedule(uint8(PolicyClass.Exact), FeeSchedule(0, 0, 0));
        OracleRequest memory r = _ask(ALICE, 0);
        assertEq(r.commitment.fee, 0, "free request");
        warpPastDeadline(r);
        reclaim(plain, r, KEEPER);
        assertEq(plain.refundOf(ALICE), 0, "nothing credited");
        assertEq(plain.payerOf(r.id), address(0), "closed");
    }

    function test_the_consumer_takes_eth_only_from_the_oracle() public {
        vm.prank(ALICE);
        (bool ok, bytes memory err) = address(plain).call{value: 1}("");
        assertTrue(!ok, "refused");
        assertEq(err, abi.encodeWithSelector(AIConsumer.OnlyOracle.selector, ALICE), "names the sender");
    }

    function test_the_oracles_errors_bubble_up_through_the_consumer() public {
        RequestParams memory p = _params();
        uint256 fee = quoteOf(p);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(IAIOracleErrors.FeeBelowQuote.selector, fee - 1, fee));
        plain.ask{value: fee - 1}(p);
    }
}
