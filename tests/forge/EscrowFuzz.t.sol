// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {LiandongEscrow} from "../../contracts/LiandongEscrow.sol";
import {FeeOnTransferToken, MintableToken, NoReturnToken} from "../../contracts/TestTokens.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {TestBase} from "./TestBase.sol";

/// @notice Property tests of single escrow operations over random amounts, deadlines, fees,
/// callers and keys. The stateful properties (balances over long call sequences) are in
/// EscrowInvariant.t.sol.
contract EscrowFuzzTest is TestBase {
    /// @dev Far above any real price, far below where `amount * feeBps` could overflow.
    uint256 private constant MAX_AMOUNT = 1e36;
    /// @dev The order of secp256k1: private keys must be below it.
    uint256 private constant SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    /// @dev For tests about one order, where the id and the key do not matter.
    bytes32 private constant ORDER_ID = keccak256("order");
    bytes32 private constant KEY_COMMITMENT = keccak256("key");

    address private buyer = address(0xB0B);
    address private stranger = address(0x5742);
    MintableToken private token;
    NoReturnToken private usdt;

    function setUp() public {
        _deployEscrow();
        token = new MintableToken("Test Token", "TT", 18);
        usdt = new NoReturnToken();
        vm.label(buyer, "buyer");
        vm.label(address(token), "token");
        vm.label(address(usdt), "usdt");
    }

    // ------------------------------------------------------------------ helpers

    /// @dev Funds `payer` with `quote.amount`, approves if needed, and pays `quote` as `payer`;
    /// returns the order's terms, with the fee the escrow charged at that moment.
    function _pay(LiandongEscrow.Quote memory quote, address payer) private returns (LiandongEscrow.Order memory) {
        bytes memory signature = _sign(quote);
        uint16 feeAtPayment = escrow.feeBps();
        uint256 value;
        if (quote.token == address(0)) {
            vm.deal(payer, quote.amount);
            value = quote.amount;
        } else {
            MintableToken(quote.token).mint(payer, quote.amount);
            vm.prank(payer);
            MintableToken(quote.token).approve(address(escrow), quote.amount);
        }
        vm.prank(payer);
        escrow.pay{value: value}(quote, signature);
        return _orderOf(quote, payer, feeAtPayment);
    }

    /// @dev Pays a fresh order of `amount` in the native coin or in the standard token.
    function _payOrder(bytes32 orderId, uint256 amount, bool native) private returns (LiandongEscrow.Order memory) {
        return _pay(_quote(orderId, native ? address(0) : address(token), amount, buyer), buyer);
    }

    function _assertStatus(bytes32 orderId, LiandongEscrow.Status expected) private view {
        (LiandongEscrow.Status status,) = escrow.orderStatus(orderId);
        vm.assertEq(uint256(status), uint256(expected), "order status");
    }

    function _balanceOf(address tokenAddress, address account) private view returns (uint256) {
        return tokenAddress == address(0) ? account.balance : MintableToken(tokenAddress).balanceOf(account);
    }

    // ----------------------------------------------------------------- quotes

    function testFuzz_QuoteDigestIsStandardEIP712(LiandongEscrow.Quote memory quote) public view {
        vm.assertEq(escrow.quoteDigest(quote), _quoteDigest(escrow, quote), "quoteDigest");
    }

    // -------------------------------------------------------------------- pay

    function testFuzz_PayNative(bytes32 orderId, uint256 amount, uint64 deliveryDelay, address payer) public {
        vm.assume(payer.code.length == 0 && uint160(payer) > 0xFFFF && payer != address(vm));
        amount = _bound(amount, 1, MAX_AMOUNT);
        LiandongEscrow.Quote memory quote = _quote(orderId, address(0), amount, payer);
        quote.deliveryDeadline = quote.expiry + uint64(_bound(deliveryDelay, 1 hours, 365 days));

        LiandongEscrow.Order memory order = _pay(quote, payer);

        (LiandongEscrow.Status status, bytes32 termsHash) = escrow.orderStatus(orderId);
        vm.assertEq(uint256(status), uint256(LiandongEscrow.Status.Paid), "status");
        vm.assertEq(termsHash, escrow.orderTermsHash(order), "terms hash");
        vm.assertEq(address(escrow).balance, amount, "escrowed");
    }

    function testFuzz_PayStandardToken(bytes32 orderId, uint256 amount, uint64 deliveryDelay) public {
        amount = _bound(amount, 1, MAX_AMOUNT);
        LiandongEscrow.Quote memory quote = _quote(orderId, address(token), amount, buyer);
        quote.deliveryDeadline = quote.expiry + uint64(_bound(deliveryDelay, 1 hours, 365 days));

        _pay(quote, buyer);

        _assertStatus(orderId, LiandongEscrow.Status.Paid);
        vm.assertEq(token.balanceOf(address(escrow)), amount, "escrowed");
        vm.assertEq(token.balanceOf(buyer), 0, "buyer paid all");
    }

    function testFuzz_PayNoReturnToken(bytes32 orderId, uint256 amount) public {
        amount = _bound(amount, 1, MAX_AMOUNT);
        LiandongEscrow.Quote memory quote = _quote(orderId, address(usdt), amount, buyer);
        bytes memory signature = _sign(quote);
        usdt.mint(buyer, amount);
        vm.startPrank(buyer);
        usdt.approve(address(escrow), amount);
        escrow.pay(quote, signature);
        vm.stopPrank();

        _assertStatus(orderId, LiandongEscrow.Status.Paid);
        vm.assertEq(usdt.balanceOf(address(escrow)), amount, "escrowed");
    }

    /// @dev A token that keeps part of every transfer must never leave an order recorded as paid.
    function testFuzz_FeeOnTransferTokenIsRefused(bytes32 orderId, uint256 amount) public {
        amount = _bound(amount, 100, MAX_AMOUNT);
        FeeOnTransferToken feeToken = new FeeOnTransferToken();
        LiandongEscrow.Quote memory quote = _quote(orderId, address(feeToken), amount, buyer);
        bytes memory signature = _sign(quote);
        feeToken.mint(buyer, amount);
        vm.startPrank(buyer);
        feeToken.approve(address(escrow), amount);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.WrongAmount.selector, amount, amount - amount / 100));
        escrow.pay(quote, signature);
        vm.stopPrank();
    }

    function testFuzz_NativeValueMustMatchAmount(bytes32 orderId, uint256 amount, uint256 value) public {
        amount = _bound(amount, 1, MAX_AMOUNT);
        value = _bound(value, 0, MAX_AMOUNT);
        vm.assume(value != amount);
        LiandongEscrow.Quote memory quote = _quote(orderId, address(0), amount, buyer);
        bytes memory signature = _sign(quote);
        vm.deal(buyer, value);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.WrongAmount.selector, amount, value));
        escrow.pay{value: value}(quote, signature);
    }

    function testFuzz_PausedEscrowRefusesPayments(bytes32 orderId, uint256 amount, bool native) public {
        amount = _bound(amount, 1, MAX_AMOUNT);
        vm.prank(owner);
        escrow.pause();
        LiandongEscrow.Quote memory quote = _quote(orderId, native ? address(0) : address(token), amount, buyer);
        bytes memory signature = _sign(quote);
        vm.deal(buyer, amount);
        vm.prank(buyer);
        vm.expectRevert(LiandongEscrow.PaymentsArePaused.selector);
        escrow.pay{value: native ? amount : 0}(quote, signature);
    }

    /// @dev An order id is taken for good: neither a second payment of the same quote, nor a
    /// different quote under the same id, nor a payment after settlement gets through.
    function testFuzz_OrderIdCannotBePaidTwice(
        bytes32 orderId,
        uint256 firstAmount,
        uint256 secondAmount,
        bool secondNative,
        uint8 settleFirst
    ) public {
        LiandongEscrow.Order memory order = _payOrder(orderId, _bound(firstAmount, 1, MAX_AMOUNT), true);
        settleFirst = uint8(_bound(settleFirst, 0, 2));
        vm.startPrank(operator);
        if (settleFirst == 1) escrow.recordDelivery(order, KEY_COMMITMENT);
        if (settleFirst == 2) escrow.refund(order);
        vm.stopPrank();

        LiandongEscrow.Quote memory second = _quote(
            orderId, secondNative ? address(0) : address(token), _bound(secondAmount, 1, MAX_AMOUNT), address(0)
        );
        bytes memory signature = _sign(second);
        vm.deal(stranger, second.amount);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.OrderAlreadyExists.selector, orderId));
        escrow.pay{value: secondNative ? second.amount : 0}(second, signature);
    }

    // ------------------------------------------------------------- signatures

    function testFuzz_SignatureByOtherKeyReverts(bytes32 orderId, uint256 signerKey) public {
        signerKey = _bound(signerKey, 1, SECP256K1_ORDER - 1);
        vm.assume(signerKey != OPERATOR_KEY);
        LiandongEscrow.Quote memory quote = _quote(orderId, address(0), 1 ether, buyer);
        bytes memory signature = _signQuote(escrow, signerKey, quote);
        vm.deal(buyer, 1 ether);
        vm.prank(buyer);
        vm.expectRevert(LiandongEscrow.InvalidQuoteSignature.selector);
        escrow.pay{value: 1 ether}(quote, signature);
    }

    /// @dev A valid signature no longer matches once the buyer changes any signed term.
    function testFuzz_TamperedQuoteReverts(bytes32 orderId, uint256 paidAmount) public {
        LiandongEscrow.Quote memory quote = _quote(orderId, address(0), 1 ether, buyer);
        bytes memory signature = _sign(quote);
        quote.amount = _bound(paidAmount, 1, 1 ether - 1);
        vm.deal(buyer, quote.amount);
        vm.prank(buyer);
        vm.expectRevert(LiandongEscrow.InvalidQuoteSignature.selector);
        escrow.pay{value: quote.amount}(quote, signature);
    }

    function testFuzz_GarbageSignatureReverts(bytes32 orderId, bytes memory signature) public {
        LiandongEscrow.Quote memory quote = _quote(orderId, address(0), 1 ether, buyer);
        vm.deal(buyer, 1 ether);
        vm.prank(buyer);
        vm.expectRevert(LiandongEscrow.InvalidQuoteSignature.selector);
        escrow.pay{value: 1 ether}(quote, signature);
    }

    function testFuzz_QuoteForOtherBuyerReverts(bytes32 orderId, address payer) public {
        vm.assume(payer != buyer && payer != address(0));
        LiandongEscrow.Quote memory quote = _quote(orderId, address(0), 1 ether, buyer);
        bytes memory signature = _sign(quote);
        vm.deal(payer, 1 ether);
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.WrongBuyer.selector, buyer, payer));
        escrow.pay{value: 1 ether}(quote, signature);
    }

    // --------------------------------------------------------------- delivery

    function testFuzz_DeliverySplitsAmountIntoMerchantAndFee(
        bytes32 orderId,
        uint256 amount,
        uint16 feeBps,
        bool native
    ) public {
        amount = _bound(amount, 1, MAX_AMOUNT);
        feeBps = uint16(_bound(feeBps, 0, escrow.MAX_FEE_BPS()));
        vm.prank(owner);
        escrow.setFee(feeRecipient, feeBps);
        LiandongEscrow.Order memory order = _payOrder(orderId, amount, native);

        vm.prank(operator);
        escrow.recordDelivery(order, keccak256(abi.encode(orderId)));

        uint256 merchant = escrow.merchantBalance(order.token);
        uint256 fee = escrow.feeBalance(order.token, feeRecipient);
        vm.assertEq(merchant + fee, amount, "merchant + fee");
        vm.assertEq(fee, amount * feeBps / 10_000, "fee");
        _assertStatus(orderId, LiandongEscrow.Status.Delivered);
    }

    /// @dev The batch credits runs of the same token with one write; whatever the order of
    /// tokens in the batch, the totals per token must equal the sum over its orders.
    function testFuzz_BatchDeliveryCreditsEveryOrder(uint256[8] memory amounts, uint8 tokenMask, uint16 feeBps) public {
        feeBps = uint16(_bound(feeBps, 0, escrow.MAX_FEE_BPS()));
        vm.prank(owner);
        escrow.setFee(feeRecipient, feeBps);

        LiandongEscrow.Delivery[] memory deliveries = new LiandongEscrow.Delivery[](amounts.length);
        uint256[2] memory expectedTotal;
        uint256[2] memory expectedFee;
        for (uint256 i; i < amounts.length; ++i) {
            uint256 amount = _bound(amounts[i], 1, MAX_AMOUNT);
            bool native = (tokenMask >> i) & 1 == 1;
            deliveries[i].order = _payOrder(bytes32(i + 1), amount, native);
            deliveries[i].commitment = keccak256(abi.encode(i));
            uint256 slot = native ? 0 : 1;
            expectedTotal[slot] += amount;
            expectedFee[slot] += amount * feeBps / 10_000;
        }

        vm.prank(operator);
        escrow.recordDeliveries(deliveries);

        address[2] memory tokens = [address(0), address(token)];
        for (uint256 slot; slot < 2; ++slot) {
            vm.assertEq(escrow.feeBalance(tokens[slot], feeRecipient), expectedFee[slot], "fee per token");
            vm.assertEq(
                escrow.merchantBalance(tokens[slot]) + escrow.feeBalance(tokens[slot], feeRecipient),
                expectedTotal[slot],
                "merchant + fee per token"
            );
        }
    }

    function testFuzz_OnlyOperatorRecordsDelivery(address caller) public {
        vm.assume(caller != operator);
        LiandongEscrow.Order memory order = _payOrder(ORDER_ID, 1 ether, true);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NotOperator.selector, caller));
        escrow.recordDelivery(order, bytes32(0));
    }

    /// @dev Settling with terms other than the paid ones must fail, or a stolen operator key
    /// could, say, credit the merchant more than was paid.
    function testFuzz_SettlingWithOtherTermsReverts(uint256 amount, uint256 claimedAmount, bool refundIt) public {
        amount = _bound(amount, 1, MAX_AMOUNT);
        claimedAmount = _bound(claimedAmount, 1, MAX_AMOUNT);
        vm.assume(claimedAmount != amount);
        LiandongEscrow.Order memory order = _payOrder(ORDER_ID, amount, true);
        order.amount = claimedAmount;
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.OrderTermsMismatch.selector, order.orderId));
        if (refundIt) escrow.refund(order);
        else escrow.recordDelivery(order, bytes32(0));
    }

    // ---------------------------------------------------------------- refunds

    function testFuzz_OperatorRefundReturnsFunds(bytes32 orderId, uint256 amount, bool native) public {
        amount = _bound(amount, 1, MAX_AMOUNT);
        LiandongEscrow.Order memory order = _payOrder(orderId, amount, native);
        uint256 buyerBefore = _balanceOf(order.token, buyer);

        vm.prank(operator);
        escrow.refund(order);

        vm.assertEq(_balanceOf(order.token, buyer), buyerBefore + amount, "buyer refunded");
        vm.assertEq(_balanceOf(order.token, address(escrow)), 0, "escrow empty");
        _assertStatus(orderId, LiandongEscrow.Status.Refunded);
    }

    /// @dev The buyer may take the money back only once the delivery deadline has passed.
    function testFuzz_BuyerRefundOnlyAfterDeadline(uint256 amount, uint64 deliveryDelay, uint64 elapsed) public {
        amount = _bound(amount, 1, MAX_AMOUNT);
        LiandongEscrow.Quote memory quote = _quote(ORDER_ID, address(0), amount, buyer);
        quote.deliveryDeadline = quote.expiry + uint64(_bound(deliveryDelay, 1 hours, 365 days));
        LiandongEscrow.Order memory order = _pay(quote, buyer);
        vm.warp(block.timestamp + _bound(elapsed, 0, 2 * 365 days));

        vm.prank(buyer);
        if (block.timestamp <= order.deliveryDeadline) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    LiandongEscrow.DeadlineNotReached.selector, order.orderId, order.deliveryDeadline
                )
            );
            escrow.refund(order);
        } else {
            escrow.refund(order);
            vm.assertEq(buyer.balance, amount, "buyer refunded");
        }
    }

    function testFuzz_StrangerCannotRefund(address caller) public {
        vm.assume(caller != operator && caller != buyer);
        LiandongEscrow.Order memory order = _payOrder(ORDER_ID, 1 ether, true);
        vm.warp(order.deliveryDeadline + 1);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NotBuyerOrOperator.selector, caller));
        escrow.refund(order);
    }

    // ------------------------------------------------------------- settlement

    /// @dev Every pair of settlements (delivery or refund, single or batch) on one order: a second
    /// single settlement reverts with the status the first one left, a second batch skips the order
    /// (`SettlementSkipped`, not Paid) and changes nothing.
    function testFuzz_SettledOrderCannotSettleAgain(uint256 amount, bool native, uint8 first, uint8 second) public {
        LiandongEscrow.Order memory order = _payOrder(ORDER_ID, _bound(amount, 1, MAX_AMOUNT), native);
        first = uint8(_bound(first, 0, 3));
        second = uint8(_bound(second, 0, 3));
        bool firstDelivers = first < 2;
        LiandongEscrow.Status settled = firstDelivers ? LiandongEscrow.Status.Delivered : LiandongEscrow.Status.Refunded;

        vm.startPrank(operator);
        _settle(order, first);
        uint256 merchantBefore = escrow.merchantBalance(order.token);
        uint256 escrowBefore = _balanceOf(order.token, address(escrow));
        if (second == 0 || second == 2) {
            vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.WrongStatus.selector, order.orderId, settled));
        } else {
            vm.expectEmit(address(escrow));
            emit LiandongEscrow.SettlementSkipped(order.orderId, 3);
        }
        _settle(order, second);
        vm.stopPrank();
        _assertStatus(order.orderId, settled);
        vm.assertEq(escrow.merchantBalance(order.token), merchantBefore, "merchant balance unchanged");
        vm.assertEq(_balanceOf(order.token, address(escrow)), escrowBefore, "escrow balance unchanged");
    }

    /// @dev 0: recordDelivery, 1: recordDeliveries, 2: refund, 3: refundBatch.
    function _settle(LiandongEscrow.Order memory order, uint8 how) private {
        if (how == 0) {
            escrow.recordDelivery(order, KEY_COMMITMENT);
        } else if (how == 1) {
            LiandongEscrow.Delivery[] memory deliveries = new LiandongEscrow.Delivery[](1);
            deliveries[0] = LiandongEscrow.Delivery({order: order, commitment: KEY_COMMITMENT});
            escrow.recordDeliveries(deliveries);
        } else if (how == 2) {
            escrow.refund(order);
        } else {
            LiandongEscrow.Order[] memory orders = new LiandongEscrow.Order[](1);
            orders[0] = order;
            escrow.refundBatch(orders);
        }
    }

    // ------------------------------------------------------------ withdrawals

    function testFuzz_StrangerCannotWithdraw(address caller, uint256 amount) public {
        vm.assume(caller != owner && caller != payout && caller != feeRecipient);
        amount = _bound(amount, 1, MAX_AMOUNT);
        LiandongEscrow.Order memory order = _payOrder(ORDER_ID, amount, true);
        vm.prank(operator);
        escrow.recordDelivery(order, KEY_COMMITMENT);

        vm.startPrank(caller);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NotMerchant.selector, caller));
        escrow.withdraw(address(0));
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NotFeeRecipient.selector, caller));
        escrow.withdrawFees(address(0), feeRecipient);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NothingToWithdraw.selector, address(0)));
        escrow.claimRefund(address(0), stranger);
        vm.stopPrank();
        vm.assertEq(address(escrow).balance, amount, "nothing left the escrow");
    }

    function testFuzz_WithdrawSendsMerchantBalanceToPayout(uint256 amount, bool byOwner) public {
        amount = _bound(amount, 1, MAX_AMOUNT);
        LiandongEscrow.Order memory order = _payOrder(ORDER_ID, amount, false);
        vm.prank(operator);
        escrow.recordDelivery(order, KEY_COMMITMENT);
        uint256 merchant = escrow.merchantBalance(address(token));

        vm.prank(byOwner ? owner : payout);
        escrow.withdraw(address(token));

        vm.assertEq(token.balanceOf(payout), merchant, "payout received");
        vm.assertEq(escrow.merchantBalance(address(token)), 0, "balance cleared");
    }

    // ------------------------------------------------------- disjoint windows

    /// @dev A delivery can be recorded up to the deadline, never after: a single call reverts, a
    /// batch skips the order (reason 4) and leaves it Paid, for the buyer to take back.
    function testFuzz_DeliveryOnlyUpToTheDeadline(uint256 amount, uint64 elapsed, bool batch, bool native) public {
        LiandongEscrow.Order memory order = _payOrder(ORDER_ID, _bound(amount, 1, MAX_AMOUNT), native);
        vm.warp(block.timestamp + _bound(elapsed, 0, 3 days));
        bool late = block.timestamp > order.deliveryDeadline;
        LiandongEscrow.Delivery[] memory deliveries = new LiandongEscrow.Delivery[](1);
        deliveries[0] = LiandongEscrow.Delivery({order: order, commitment: KEY_COMMITMENT});

        vm.startPrank(operator);
        if (late && !batch) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    LiandongEscrow.DeliveryWindowClosed.selector, order.orderId, order.deliveryDeadline
                )
            );
            escrow.recordDelivery(order, KEY_COMMITMENT);
        } else if (late) {
            vm.expectEmit(address(escrow));
            emit LiandongEscrow.SettlementSkipped(order.orderId, 4);
            escrow.recordDeliveries(deliveries);
        } else if (batch) {
            escrow.recordDeliveries(deliveries);
        } else {
            escrow.recordDelivery(order, KEY_COMMITMENT);
        }
        vm.stopPrank();

        _assertStatus(order.orderId, late ? LiandongEscrow.Status.Paid : LiandongEscrow.Status.Delivered);
        if (!late) return;
        vm.prank(buyer);
        escrow.refund(order);
        _assertStatus(order.orderId, LiandongEscrow.Status.Refunded);
        vm.assertEq(_balanceOf(order.token, buyer), order.amount, "late order refunded to the buyer");
    }

    /// @dev The double dip: once delivered, the order can never be refunded, by the buyer after the
    /// deadline (single call) or by the operator (batch: skipped as not Paid).
    function testFuzz_RefundAfterDeliveryIsImpossible(uint256 amount, uint64 elapsed, bool native) public {
        LiandongEscrow.Order memory order = _payOrder(ORDER_ID, _bound(amount, 1, MAX_AMOUNT), native);
        vm.warp(block.timestamp + _bound(elapsed, 0, 1 days));
        vm.prank(operator);
        escrow.recordDelivery(order, KEY_COMMITMENT);

        vm.warp(uint256(order.deliveryDeadline) + 1 + _bound(elapsed, 0, 30 days));
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(LiandongEscrow.WrongStatus.selector, order.orderId, LiandongEscrow.Status.Delivered)
        );
        escrow.refund(order);

        LiandongEscrow.Order[] memory orders = new LiandongEscrow.Order[](1);
        orders[0] = order;
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.SettlementSkipped(order.orderId, 3);
        vm.prank(operator);
        escrow.refundBatch(orders);

        _assertStatus(order.orderId, LiandongEscrow.Status.Delivered);
        vm.assertEq(_balanceOf(order.token, buyer), 0, "buyer got nothing back");
        vm.assertEq(_balanceOf(order.token, address(escrow)), order.amount, "the merchant's funds stay");
    }

    function testFuzz_ZeroAmountIsRefused(bytes32 orderId, bool native) public {
        LiandongEscrow.Quote memory quote = _quote(orderId, native ? address(0) : address(token), 0, buyer);
        bytes memory signature = _sign(quote);
        vm.prank(buyer);
        vm.expectRevert(LiandongEscrow.ZeroAmount.selector);
        escrow.pay(quote, signature);
    }

    /// @dev The deadline must leave at least MIN_DELIVERY_WINDOW after the quote's expiry.
    function testFuzz_DeliveryWindowTooShortIsRefused(bytes32 orderId, uint64 expiryDelay, uint64 window) public {
        LiandongEscrow.Quote memory quote = _quote(orderId, address(0), 1 ether, buyer);
        quote.expiry = uint64(block.timestamp + _bound(expiryDelay, 0, 30 days));
        uint256 minimum = escrow.MIN_DELIVERY_WINDOW();
        vm.assertEq(minimum, 1 hours, "MIN_DELIVERY_WINDOW");
        // Anywhere from 0 (before the expiry, too) to one second short of the minimum window.
        quote.deliveryDeadline = uint64(_bound(window, 0, quote.expiry + minimum - 1));
        bytes memory signature = _sign(quote);
        vm.deal(buyer, 1 ether);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(
                LiandongEscrow.DeliveryWindowTooShort.selector, quote.expiry, quote.deliveryDeadline
            )
        );
        escrow.pay{value: 1 ether}(quote, signature);

        quote.deliveryDeadline = quote.expiry + escrow.MIN_DELIVERY_WINDOW();
        signature = _sign(quote);
        vm.prank(buyer);
        escrow.pay{value: 1 ether}(quote, signature);
        _assertStatus(orderId, LiandongEscrow.Status.Paid);
    }

    // ------------------------------------------------------------------- fees

    /// @dev The fee is the one in force at payment: raising or lowering it before the delivery
    /// changes nothing for a paid order; the fee goes to the recipient at delivery, and fees that
    /// accrued to the former recipient stay its own.
    function testFuzz_FeeIsFixedAtPayment(uint256 amount, uint16 feeAtPayment, uint16 feeLater, bool native) public {
        amount = _bound(amount, 1, MAX_AMOUNT);
        feeAtPayment = uint16(_bound(feeAtPayment, 0, escrow.MAX_FEE_BPS()));
        feeLater = uint16(_bound(feeLater, 0, escrow.MAX_FEE_BPS()));
        vm.prank(owner);
        escrow.setFee(feeRecipient, feeAtPayment);
        LiandongEscrow.Order memory earlier = _payOrder(keccak256("earlier"), amount, native);
        vm.prank(operator);
        escrow.recordDelivery(earlier, KEY_COMMITMENT);
        LiandongEscrow.Order memory order = _payOrder(ORDER_ID, amount, native);
        vm.assertEq(order.feeBps, feeAtPayment, "fee in the terms");

        address newRecipient = address(0xFEE2);
        vm.prank(owner);
        escrow.setFee(newRecipient, feeLater);
        if (feeLater != feeAtPayment) {
            // The terms with today's fee are not the ones paid.
            LiandongEscrow.Order memory atTodaysFee = LiandongEscrow.Order(
                order.orderId, order.buyer, order.token, order.amount, order.deliveryDeadline, feeLater
            );
            vm.prank(operator);
            vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.OrderTermsMismatch.selector, order.orderId));
            escrow.recordDelivery(atTodaysFee, KEY_COMMITMENT);
        }
        uint256 fee = amount * feeAtPayment / 10_000;
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.OrderDelivered(order.orderId, KEY_COMMITMENT, fee);
        vm.prank(operator);
        escrow.recordDelivery(order, KEY_COMMITMENT);

        vm.assertEq(escrow.feeBalance(order.token, feeRecipient), fee, "former recipient keeps what accrued to it");
        vm.assertEq(escrow.feeBalance(order.token, newRecipient), fee, "the new recipient gets the new delivery's fee");
        vm.assertEq(escrow.merchantBalance(order.token), 2 * (amount - fee), "merchant");

        if (fee == 0) return;
        vm.prank(newRecipient);
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NotFeeRecipient.selector, newRecipient));
        escrow.withdrawFees(order.token, feeRecipient);
        vm.prank(feeRecipient);
        escrow.withdrawFees(order.token, feeRecipient);
        vm.prank(owner);
        escrow.withdrawFees(order.token, newRecipient);
        vm.assertEq(_balanceOf(order.token, feeRecipient), fee, "former recipient paid");
        vm.assertEq(_balanceOf(order.token, newRecipient), fee, "new recipient paid");
    }

    /// @dev `OrderPaid` carries the fee fixed at payment, the last of the order's terms.
    function testFuzz_OrderPaidCarriesTheFee(bytes32 orderId, uint16 feeBps) public {
        feeBps = uint16(_bound(feeBps, 0, escrow.MAX_FEE_BPS()));
        vm.prank(owner);
        escrow.setFee(feeRecipient, feeBps);
        LiandongEscrow.Quote memory quote = _quote(orderId, address(0), 1 ether, buyer);
        bytes memory signature = _sign(quote);
        vm.deal(buyer, 1 ether);
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.OrderPaid(
            orderId, buyer, quote.productId, quote.quantity, address(0), 1 ether, quote.deliveryDeadline, feeBps
        );
        vm.prank(buyer);
        escrow.pay{value: 1 ether}(quote, signature);
        (, bytes32 termsHash) = escrow.orderStatus(orderId);
        bytes32 expected = keccak256(abi.encode(buyer, address(0), 1 ether, quote.deliveryDeadline, feeBps)) & ~bytes32(uint256(3));
        vm.assertEq(termsHash, expected, "stored terms hash");
    }

    /// @dev The fee is exact and never overflows, even for amounts where `amount * feeBps` would:
    /// such an order is still delivered (a batch never reverts for one order).
    function testFuzz_FeeIsExactForAnyAmount(uint256 amount, uint16 feeBps) public {
        amount = _bound(amount, 1, type(uint256).max / 2);
        feeBps = uint16(_bound(feeBps, 0, escrow.MAX_FEE_BPS()));
        vm.prank(owner);
        escrow.setFee(feeRecipient, feeBps);
        LiandongEscrow.Order memory order = _payOrder(ORDER_ID, amount, false);
        LiandongEscrow.Delivery[] memory deliveries = new LiandongEscrow.Delivery[](1);
        deliveries[0] = LiandongEscrow.Delivery({order: order, commitment: KEY_COMMITMENT});
        vm.prank(operator);
        escrow.recordDeliveries(deliveries);
        uint256 fee = Math.mulDiv(amount, feeBps, 10_000);
        vm.assertEq(escrow.feeBalance(address(token), feeRecipient), fee, "fee");
        vm.assertEq(escrow.merchantBalance(address(token)), amount - fee, "merchant");
    }

    /// @dev Terms whose ABI words carry dirty upper bits (here the buyer's) are not the paid terms:
    /// a batch skips them as a mismatch, a single call reverts with it.
    function testFuzz_DirtyTermsAreAMismatch(uint96 dirt, bool batch) public {
        vm.assume(dirt != 0);
        LiandongEscrow.Order memory order = _payOrder(ORDER_ID, 1 ether, true);
        bytes memory data;
        if (batch) {
            LiandongEscrow.Delivery[] memory deliveries = new LiandongEscrow.Delivery[](1);
            deliveries[0] = LiandongEscrow.Delivery({order: order, commitment: KEY_COMMITMENT});
            data = abi.encodeCall(escrow.recordDeliveries, (deliveries));
            // selector, array offset, length, then the order: its id, then the buyer word.
            _dirtyWord(data, 4 + 3 * 32, dirt);
        } else {
            data = abi.encodeCall(escrow.recordDelivery, (order, KEY_COMMITMENT));
            _dirtyWord(data, 4 + 32, dirt);
        }
        if (batch) {
            vm.expectEmit(address(escrow));
            emit LiandongEscrow.SettlementSkipped(ORDER_ID, 2);
        } else {
            vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.OrderTermsMismatch.selector, ORDER_ID));
        }
        vm.prank(operator);
        (bool ok,) = address(escrow).call(data);
        // (With expectRevert pending, forge reports the reverted low-level call as a success.)
        vm.assertTrue(ok, "the batch goes through; the single call reverted as expected");
        _assertStatus(ORDER_ID, LiandongEscrow.Status.Paid);
    }

    /// @dev Sets the upper 96 bits of the 32-byte word at `offset` of `data` to `dirt`.
    function _dirtyWord(bytes memory data, uint256 offset, uint96 dirt) private pure {
        assembly ("memory-safe") {
            let word := add(add(data, 32), offset)
            mstore(word, or(mload(word), shl(160, dirt)))
        }
    }
}
