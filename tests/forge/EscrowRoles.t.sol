// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {LiandongEscrow} from "../../contracts/LiandongEscrow.sol";
import {TestBase} from "./TestBase.sol";

/// @notice The owner's powers and their bounds: no renouncing, two-step ownership, payout changes
/// only after a delay and cancellable by the payout address, the operator revocable at once, fees
/// per recipient.
contract EscrowRolesTest is TestBase {
    uint256 private constant PRICE = 1 ether;
    bytes32 private constant KEY_COMMITMENT = keccak256("key");

    address private buyer = address(0xB0B);
    address private stranger = address(0x5742);
    address private thief = address(0x7417);
    uint256 private _nextId = 1;

    function setUp() public {
        _deployEscrow();
    }

    function _payNative() private returns (LiandongEscrow.Order memory) {
        LiandongEscrow.Quote memory quote = _quote(bytes32(_nextId++), address(0), PRICE, buyer);
        bytes memory signature = _sign(quote);
        uint16 feeBps = escrow.feeBps();
        vm.deal(buyer, PRICE);
        vm.prank(buyer);
        escrow.pay{value: PRICE}(quote, signature);
        return _orderOf(quote, buyer, feeBps);
    }

    // --------------------------------------------------------------- ownership

    function test_RenounceOwnershipReverts() public {
        vm.prank(owner);
        vm.expectRevert(LiandongEscrow.OwnershipCannotBeRenounced.selector);
        escrow.renounceOwnership();
        vm.prank(stranger);
        vm.expectRevert(LiandongEscrow.OwnershipCannotBeRenounced.selector);
        escrow.renounceOwnership();
        vm.assertEq(escrow.owner(), owner, "owner kept");
    }

    function test_OwnershipMovesInTwoSteps() public {
        vm.prank(owner);
        escrow.transferOwnership(stranger);
        vm.assertEq(escrow.owner(), owner, "not yet");
        vm.prank(thief);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, thief));
        escrow.acceptOwnership();
        vm.prank(stranger);
        escrow.acceptOwnership();
        vm.assertEq(escrow.owner(), stranger, "accepted");
    }

    // ---------------------------------------------------------------- payout

    /// @dev There is no immediate payout change any more.
    function test_SetPayoutIsGone() public {
        vm.prank(owner);
        (bool ok,) = address(escrow).call(abi.encodeWithSignature("setPayout(address)", thief));
        vm.assertFalse(ok, "setPayout does not exist");
        vm.assertEq(escrow.payout(), payout, "payout unchanged");
    }

    function testFuzz_PayoutChangeTakesEffectOnlyAfterTheDelay(uint64 wait) public {
        address newPayout = address(0x9A02);
        uint64 effectiveAt = uint64(block.timestamp) + escrow.PAYOUT_DELAY();
        vm.assertEq(escrow.PAYOUT_DELAY(), 2 days, "PAYOUT_DELAY");
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.PayoutChangeProposed(newPayout, effectiveAt);
        vm.prank(owner);
        escrow.proposePayout(newPayout);
        vm.assertEq(escrow.pendingPayout(), newPayout, "pending");
        vm.assertEq(escrow.pendingPayoutAt(), effectiveAt, "pending at");

        vm.warp(block.timestamp + _bound(wait, 0, 2 days - 1));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.PayoutChangeNotReady.selector, effectiveAt));
        escrow.applyPayout();
        vm.assertEq(escrow.payout(), payout, "not yet");

        vm.warp(effectiveAt + _bound(wait, 0, 365 days));
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.PayoutChanged(payout, newPayout);
        vm.prank(stranger); // anyone may apply it
        escrow.applyPayout();
        vm.assertEq(escrow.payout(), newPayout, "applied");
        vm.assertEq(escrow.pendingPayout(), address(0), "nothing pending");
        vm.assertEq(escrow.pendingPayoutAt(), 0, "no time pending");
        vm.expectRevert(LiandongEscrow.NoPendingPayout.selector);
        escrow.applyPayout();

        // The merchant's funds now go to the new payout address.
        LiandongEscrow.Order memory order = _payNative();
        vm.prank(operator);
        escrow.recordDelivery(order, KEY_COMMITMENT);
        vm.prank(newPayout);
        escrow.withdraw(address(0));
        vm.assertEq(newPayout.balance, PRICE - PRICE * INITIAL_FEE_BPS / 10_000, "withdrawn to the new payout");
    }

    /// @dev A stolen owner key proposes itself as payout; the merchant's payout key cancels, as
    /// often as needed; a new proposal restarts the delay.
    function test_PayoutAddressCancelsAChangeProposedByAStolenOwnerKey() public {
        vm.prank(owner);
        escrow.proposePayout(thief);
        vm.warp(block.timestamp + 1 days);

        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NotMerchant.selector, stranger));
        escrow.cancelPayout();
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.PayoutChangeCancelled(thief, payout);
        vm.prank(payout);
        escrow.cancelPayout();
        vm.assertEq(escrow.pendingPayout(), address(0), "cancelled");
        vm.prank(payout);
        vm.expectRevert(LiandongEscrow.NoPendingPayout.selector);
        escrow.cancelPayout();

        vm.warp(block.timestamp + 2 days);
        vm.expectRevert(LiandongEscrow.NoPendingPayout.selector);
        escrow.applyPayout();
        vm.assertEq(escrow.payout(), payout, "payout kept");

        // Proposing again (or replacing a proposal) restarts the clock.
        vm.prank(owner);
        escrow.proposePayout(thief);
        vm.warp(block.timestamp + 1 days);
        vm.prank(owner);
        escrow.proposePayout(address(0x9A03));
        vm.assertEq(escrow.pendingPayoutAt(), block.timestamp + 2 days, "replaced proposal, new delay");
        vm.warp(block.timestamp + 1 days + 1);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.PayoutChangeNotReady.selector, escrow.pendingPayoutAt()));
        escrow.applyPayout();
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.PayoutChangeCancelled(address(0x9A03), owner);
        vm.prank(owner);
        escrow.cancelPayout();
    }

    function test_OnlyTheOwnerProposesAPayout() public {
        vm.prank(payout);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, payout));
        escrow.proposePayout(payout);
        vm.prank(owner);
        vm.expectRevert(LiandongEscrow.ZeroAddress.selector);
        escrow.proposePayout(address(0));
    }

    /// @dev What a stolen owner key can do at once: make itself operator and record deliveries.
    /// The funds are credited to the merchant and can only be withdrawn to the payout address,
    /// which it cannot change while the merchant cancels.
    function test_StolenOwnerKeyCannotTakeTheEscrowedFunds() public {
        LiandongEscrow.Order memory order = _payNative();
        vm.startPrank(owner); // the thief holds the owner key
        escrow.setOperator(thief);
        escrow.proposePayout(thief);
        vm.stopPrank();
        vm.prank(thief);
        escrow.recordDelivery(order, KEY_COMMITMENT);
        vm.prank(thief);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NotMerchant.selector, thief));
        escrow.withdraw(address(0));
        vm.prank(owner);
        escrow.withdraw(address(0)); // the owner may withdraw, but only to the payout address
        vm.assertEq(thief.balance, 0, "nothing for the thief");
        vm.assertEq(payout.balance, PRICE - PRICE * INITIAL_FEE_BPS / 10_000, "the merchant's payout got it");
        vm.prank(payout);
        escrow.cancelPayout();
    }

    // -------------------------------------------------------------- operator

    function testFuzz_OperatorRevokesItselfOrTheOwnerRevokesIt(bool byOperator) public {
        LiandongEscrow.Order memory order = _payNative();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NotOwnerOrOperator.selector, stranger));
        escrow.revokeOperator();

        vm.expectEmit(address(escrow));
        emit LiandongEscrow.OperatorChanged(operator, address(0));
        vm.prank(byOperator ? operator : owner);
        escrow.revokeOperator();
        vm.assertEq(escrow.operator(), address(0), "revoked");

        // No quote verifies, nothing can be recorded.
        LiandongEscrow.Quote memory quote = _quote(bytes32(_nextId++), address(0), PRICE, buyer);
        bytes memory signature = _sign(quote);
        vm.deal(buyer, PRICE);
        vm.prank(buyer);
        vm.expectRevert(LiandongEscrow.InvalidQuoteSignature.selector);
        escrow.pay{value: PRICE}(quote, signature);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NotOperator.selector, operator));
        escrow.recordDelivery(order, KEY_COMMITMENT);
        LiandongEscrow.Order[] memory orders = new LiandongEscrow.Order[](1);
        orders[0] = order;
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NotOperator.selector, operator));
        escrow.refundBatch(orders);
        vm.prank(owner);
        vm.expectRevert(LiandongEscrow.OperatorAlreadyRevoked.selector);
        escrow.revokeOperator();

        // The buyer still gets the money back after the deadline.
        vm.warp(order.deliveryDeadline + 1);
        vm.prank(buyer);
        escrow.refund(order);
        vm.assertEq(buyer.balance, 2 * PRICE, "refunded, and the refused payment kept");

        // The owner sets a new operator, whose quotes verify.
        vm.prank(owner);
        vm.expectRevert(LiandongEscrow.ZeroAddress.selector);
        escrow.setOperator(address(0));
        uint256 newKey = OPERATOR_KEY + 1;
        vm.prank(owner);
        escrow.setOperator(vm.addr(newKey));
        quote = _quote(bytes32(_nextId++), address(0), PRICE, buyer);
        signature = _signQuote(escrow, newKey, quote);
        vm.prank(buyer);
        escrow.pay{value: PRICE}(quote, signature);
    }

    // ------------------------------------------------------------------ fees

    function test_FeeBalancesStayWithTheirRecipient() public {
        LiandongEscrow.Order memory first = _payNative();
        vm.prank(operator);
        escrow.recordDelivery(first, KEY_COMMITMENT);
        address newRecipient = address(0xFEE2);
        vm.prank(owner);
        escrow.setFee(newRecipient, 100);
        LiandongEscrow.Order memory second = _payNative();
        vm.prank(operator);
        escrow.recordDelivery(second, KEY_COMMITMENT);

        uint256 oldFee = PRICE * INITIAL_FEE_BPS / 10_000;
        uint256 newFee = PRICE * 100 / 10_000;
        vm.assertEq(escrow.feeBalance(address(0), feeRecipient), oldFee, "former recipient's fees");
        vm.assertEq(escrow.feeBalance(address(0), newRecipient), newFee, "new recipient's fees");

        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NotFeeRecipient.selector, stranger));
        escrow.withdrawFees(address(0), feeRecipient);
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.FeeWithdrawal(address(0), feeRecipient, oldFee);
        vm.prank(owner); // the owner can trigger it, the fees still go to their recipient
        escrow.withdrawFees(address(0), feeRecipient);
        vm.prank(newRecipient);
        escrow.withdrawFees(address(0), newRecipient);
        vm.assertEq(feeRecipient.balance, oldFee, "former recipient paid");
        vm.assertEq(newRecipient.balance, newFee, "new recipient paid");
        vm.assertEq(owner.balance, 0, "nothing to the owner");
        vm.prank(newRecipient);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NothingToWithdraw.selector, address(0)));
        escrow.withdrawFees(address(0), newRecipient);
    }
}
