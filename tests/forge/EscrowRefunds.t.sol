// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {LiandongEscrow} from "../../contracts/LiandongEscrow.sol";
import {MintableToken, NoReturnToken} from "../../contracts/TestTokens.sol";
import {GasBurner, HookToken, ReentrantBuyer, ReturnBomb, SafeLikeProxy, SafeLikeSingleton} from "./Actors.sol";
import {TestBase} from "./TestBase.sol";

/// @notice Refunds and batches against hostile buyers and odd tokens: bounded sends, credits,
/// claims to another address, batches that skip what they cannot settle.
contract EscrowRefundsTest is TestBase {
    uint256 private constant BATCH = 50;
    uint256 private constant PRICE = 0.01 ether;
    bytes32 private constant KEY_COMMITMENT = keccak256("key");

    /// @dev What one hostile buyer may add to a refund batch over a plain buyer: the stipend it burns
    /// (30,000, plus the 2,300 the value transfer adds) and the credit written for it (22,100), with
    /// a little room for hashing the credit's slot.
    uint256 private constant HOSTILE_BUYER_GAS_BOUND = 30_000 + 2_300 + 22_100 + 1_000;
    /// @dev An absolute bound for a batch of 50 native refunds, one of them to a hostile buyer. In
    /// a test every account is already warm; a real transaction pays about 16k a refund (README).
    uint256 private constant BATCH_OF_50_GAS_BOUND = 50 * 16_000 + HOSTILE_BUYER_GAS_BOUND;

    address private buyer = address(0xB0B);
    address private rescue = address(0x7E5C0E);
    MintableToken private token;
    NoReturnToken private usdt;
    HookToken private hookToken;
    uint256 private _nextId = 1;

    function setUp() public {
        _deployEscrow();
        token = new MintableToken("Test Token", "TT", 18);
        usdt = new NoReturnToken();
        hookToken = new HookToken();
    }

    // ------------------------------------------------------------ helpers

    /// @dev Pays a fresh order of `amount` in `tokenAddress` from `payer` (an account or an
    /// `execute` wallet), funding it first; returns its terms.
    function _pay(address payer, address tokenAddress, uint256 amount) private returns (LiandongEscrow.Order memory) {
        LiandongEscrow.Quote memory quote = _quote(bytes32(_nextId++), tokenAddress, amount, payer);
        bytes memory signature = _sign(quote);
        bytes memory payCall = abi.encodeCall(escrow.pay, (quote, signature));
        uint256 value = tokenAddress == address(0) ? amount : 0;
        if (tokenAddress != address(0)) {
            _mint(tokenAddress, payer, amount);
            _as(payer, tokenAddress, abi.encodeWithSignature("approve(address,uint256)", address(escrow), amount));
        }
        if (payer.code.length == 0) {
            // A real buyer account has sent transactions: not an empty account for the refund's call.
            if (vm.getNonce(payer) == 0) vm.setNonce(payer, 1);
            vm.deal(payer, payer.balance + value);
            vm.prank(payer);
            (bool ok,) = address(escrow).call{value: value}(payCall);
            vm.assertTrue(ok, "payment");
        } else {
            vm.deal(address(this), value);
            GasBurner(payable(payer)).execute{value: value}(address(escrow), payCall);
        }
        return _orderOf(quote, payer, INITIAL_FEE_BPS);
    }

    function _mint(address tokenAddress, address to, uint256 amount) private {
        if (tokenAddress == address(usdt)) usdt.mint(to, amount);
        else if (tokenAddress == address(hookToken)) hookToken.mint(to, amount);
        else token.mint(to, amount);
    }

    /// @dev Makes `account` call `target` with `data`.
    function _as(address account, address target, bytes memory data) private returns (bytes memory) {
        if (account.code.length != 0) return GasBurner(payable(account)).execute(target, data);
        vm.prank(account);
        (bool ok, bytes memory result) = target.call(data);
        vm.assertTrue(ok, "call as account");
        return result;
    }

    function _status(bytes32 orderId) private view returns (LiandongEscrow.Status status) {
        (status,) = escrow.orderStatus(orderId);
    }

    /// @dev 50 native orders from fresh plain accounts (numbered from `firstBuyer`) or, at
    /// position 25, from `hostile` when it is not zero.
    function _batchWith(address hostile, uint160 firstBuyer) private returns (LiandongEscrow.Order[] memory orders) {
        orders = new LiandongEscrow.Order[](BATCH);
        for (uint256 i; i < BATCH; ++i) {
            address payer = i == 25 && hostile != address(0) ? hostile : address(firstBuyer + uint160(i));
            orders[i] = _pay(payer, address(0), PRICE);
        }
    }

    /// @dev Gas of a batch of 50 with `hostile` at position 25, checked against the same batch of
    /// plain buyers and against the absolute bound; checks the other 49 got their refunds.
    function _checkBatchWithHostileBuyer(address hostile) private returns (uint256 gasUsed) {
        LiandongEscrow.Order[] memory orders = _batchWith(hostile, 0xB00000);
        LiandongEscrow.Order[] memory plainOrders = _batchWith(address(0), 0xB10000);
        // All in one test transaction: warm the escrow's slots first, so that both batches pay alike.
        _refundBatchGas(new LiandongEscrow.Order[](0));
        gasUsed = _refundBatchGas(orders);
        uint256 plainGas = _refundBatchGas(plainOrders);
        _assertOthersRefunded(orders, 25);
        vm.assertEq(escrow.refundCredit(address(0), hostile), PRICE, "hostile buyer credited");
        vm.assertEq(hostile.balance, 0, "nothing sent to the hostile buyer");
        vm.assertLe(gasUsed, plainGas + HOSTILE_BUYER_GAS_BOUND, "a hostile buyer adds at most its bounded send");
        vm.assertLe(gasUsed, BATCH_OF_50_GAS_BOUND, "refund batch of 50 gas bounded");
    }

    /// @dev The gas the escrow's `refundBatch` call used (without the test's own encoding of it).
    function _refundBatchGas(LiandongEscrow.Order[] memory orders) private returns (uint256) {
        vm.prank(operator);
        escrow.refundBatch(orders);
        return vm.lastCallGas().gasTotalUsed;
    }

    function _assertOthersRefunded(LiandongEscrow.Order[] memory orders, uint256 skip) private view {
        for (uint256 i; i < orders.length; ++i) {
            vm.assertEq(uint256(_status(orders[i].orderId)), uint256(LiandongEscrow.Status.Refunded), "refunded");
            if (i != skip) vm.assertEq(orders[i].buyer.balance, PRICE, "sent back to the buyer");
        }
    }

    // ------------------------------------------------ hostile buyers in batches

    /// @dev A buyer whose receive() reverts or returns with 300 KB inside a batch of 50: the other
    /// 49 refunds go out, its own is credited, and the batch costs what 50 ordinary refunds cost
    /// plus at most the bounded send.
    function test_RevertBombInARefundBatchOf50() public {
        ReturnBomb bomb = new ReturnBomb();
        bomb.setReverts(true);
        _checkBatchWithHostileBuyer(address(bomb));
    }

    /// @dev The same with a receive() that succeeds but returns 300 KB.
    function test_ReturnBombInARefundBatchOf50() public {
        ReturnBomb bomb = new ReturnBomb();
        bomb.setReverts(false);
        _checkBatchWithHostileBuyer(address(bomb));
    }

    /// @dev The same with a buyer whose receive() loops until it runs out of gas.
    function test_GasBurnerInARefundBatchOf50() public {
        _checkBatchWithHostileBuyer(address(new GasBurner()));
    }

    /// @dev A buyer that tries to claim again from inside its receive() (and its token hook): the
    /// guard stops it, and it still gets its refund.
    function test_ReentrantBuyerCannotReenter() public {
        ReentrantBuyer reentrant = new ReentrantBuyer(address(escrow));
        _as(address(reentrant), address(hookToken), abi.encodeCall(hookToken.registerHook, (true)));
        LiandongEscrow.Order[] memory orders = new LiandongEscrow.Order[](2);
        orders[0] = _pay(address(reentrant), address(0), PRICE);
        orders[1] = _pay(address(reentrant), address(hookToken), 5e18);
        uint256 attemptsBefore = reentrant.attempts();

        vm.prank(operator);
        escrow.refundBatch(orders);

        vm.assertGt(reentrant.attempts(), attemptsBefore, "it tried to re-enter");
        vm.assertEq(reentrant.reentries(), 0, "no re-entry went through");
        vm.assertEq(address(reentrant).balance, PRICE, "native refund sent");
        vm.assertEq(hookToken.balanceOf(address(reentrant)), 5e18, "token refund sent");
        vm.assertEq(escrow.refundCredit(address(0), address(reentrant)), 0, "nothing credited");
    }

    /// @dev A Safe-like wallet (proxy, delegatecall, event in receive) needs far more than 2,300
    /// gas to receive: the stipend is enough, so its refund is sent, not credited.
    function test_SmartWalletRefundIsSentWithinTheStipend() public {
        address wallet = address(new SafeLikeProxy(address(new SafeLikeSingleton())));
        LiandongEscrow.Order memory order = _pay(wallet, address(0), PRICE);
        vm.prank(operator);
        vm.expectEmit(wallet);
        emit SafeLikeSingleton.SafeReceived(address(escrow), PRICE);
        escrow.refund(order);
        vm.assertEq(wallet.balance, PRICE, "sent");
        vm.assertEq(escrow.refundCredit(address(0), wallet), 0, "not credited");
    }

    /// @dev A token whose transfer calls the buyer: a hook that burns the gas or reverts with
    /// 300 KB gets the refund credited, within the token gas bound.
    function test_HookTokenRefundsToHostileBuyersAreCredited() public {
        GasBurner burner = new GasBurner();
        ReturnBomb bomb = new ReturnBomb();
        _as(address(burner), address(hookToken), abi.encodeCall(hookToken.registerHook, (true)));
        _as(address(bomb), address(hookToken), abi.encodeCall(hookToken.registerHook, (true)));
        LiandongEscrow.Order[] memory orders = new LiandongEscrow.Order[](3);
        orders[0] = _pay(address(burner), address(hookToken), 1e18);
        orders[1] = _pay(address(bomb), address(hookToken), 2e18);
        orders[2] = _pay(buyer, address(hookToken), 3e18);

        uint256 gasUsed = _refundBatchGas(orders);

        vm.assertEq(escrow.refundCredit(address(hookToken), address(burner)), 1e18, "burner credited");
        vm.assertEq(escrow.refundCredit(address(hookToken), address(bomb)), 2e18, "bomb credited");
        vm.assertEq(hookToken.balanceOf(buyer), 3e18, "plain buyer refunded");
        vm.assertLe(gasUsed, 2 * escrow.REFUND_TOKEN_GAS() + 3 * 40_000, "hook token batch gas bounded");

        // Claimed to another account, the credits go out with all the gas left.
        _as(address(burner), address(escrow), abi.encodeCall(escrow.claimRefund, (address(hookToken), rescue)));
        vm.assertEq(hookToken.balanceOf(rescue), 1e18, "claimed to the rescue account");
    }

    /// @dev The USDT-style token (no bool) is refunded within the token gas bound, also to an
    /// account that never held it (its balance slot is created); a blocked holder is credited.
    function test_NoReturnTokenRefundsWithBoundedGas() public {
        address fresh = address(0xF8E5);
        LiandongEscrow.Order memory order = _pay(fresh, address(usdt), 25e6);
        LiandongEscrow.Order memory blocked = _pay(buyer, address(usdt), 7e6);
        usdt.setBlocked(buyer, true);

        LiandongEscrow.Order[] memory orders = new LiandongEscrow.Order[](2);
        (orders[0], orders[1]) = (order, blocked);
        vm.prank(operator);
        escrow.refundBatch(orders);

        vm.assertEq(usdt.balanceOf(fresh), 25e6, "sent");
        vm.assertEq(escrow.refundCredit(address(usdt), buyer), 7e6, "blocked holder credited");
        usdt.setBlocked(buyer, false);
        vm.prank(buyer);
        escrow.claimRefund(address(usdt), buyer);
        vm.assertEq(usdt.balanceOf(buyer), 7e6, "claimed");
    }

    // ------------------------------------------------------------------ claims

    /// @dev An account that can never receive the native coin names another to claim to.
    function test_ClaimRefundToAnotherAddress() public {
        GasBurner burner = new GasBurner();
        LiandongEscrow.Order memory order = _pay(address(burner), address(0), PRICE);
        vm.prank(operator);
        escrow.refund(order);
        vm.assertEq(escrow.refundCredit(address(0), address(burner)), PRICE, "credited");

        // To itself it fails, with all the gas, and the credit stays.
        vm.expectRevert();
        burner.execute{gas: 1_000_000}(
            address(escrow), abi.encodeCall(escrow.claimRefund, (address(0), address(burner)))
        );
        vm.expectRevert(LiandongEscrow.ZeroAddress.selector);
        burner.execute(address(escrow), abi.encodeCall(escrow.claimRefund, (address(0), address(0))));
        vm.assertEq(escrow.refundCredit(address(0), address(burner)), PRICE, "credit kept");

        vm.expectEmit(address(escrow));
        emit LiandongEscrow.RefundClaimed(address(burner), address(0), rescue, PRICE);
        burner.execute(address(escrow), abi.encodeCall(escrow.claimRefund, (address(0), rescue)));
        vm.assertEq(rescue.balance, PRICE, "rescue account received the refund");
        vm.assertEq(escrow.refundCredit(address(0), address(burner)), 0, "credit cleared");
        vm.expectRevert(abi.encodeWithSelector(LiandongEscrow.NothingToWithdraw.selector, address(0)));
        burner.execute(address(escrow), abi.encodeCall(escrow.claimRefund, (address(0), rescue)));
    }

    // ----------------------------------------------------------- skipping batches

    /// @dev A refund batch holding an order refunded meanwhile (the buyer's own refund landing
    /// between the shop's estimate and inclusion), a delivered one, an unknown id and forged terms:
    /// each is skipped with its reason, the rest are refunded.
    function test_RefundBatchSkipsWhatItCannotRefund() public {
        LiandongEscrow.Order[] memory orders = new LiandongEscrow.Order[](6);
        for (uint256 i; i < orders.length; ++i) {
            orders[i] = _pay(address(uint160(0xB00000 + i)), address(0), PRICE);
        }
        vm.warp(orders[1].deliveryDeadline + 1);
        vm.prank(orders[1].buyer);
        escrow.refund(orders[1]);
        vm.warp(orders[2].deliveryDeadline - 1);
        vm.prank(operator);
        escrow.recordDelivery(orders[2], KEY_COMMITMENT);
        orders[3].orderId = keccak256("never paid");
        orders[4].amount += 1;

        vm.expectEmit(address(escrow));
        emit LiandongEscrow.OrderRefunded(orders[0].orderId, orders[0].buyer, address(0), PRICE, false);
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.SettlementSkipped(orders[1].orderId, escrow.SKIP_NOT_PAID());
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.SettlementSkipped(orders[2].orderId, escrow.SKIP_NOT_PAID());
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.SettlementSkipped(orders[3].orderId, escrow.SKIP_UNKNOWN_ORDER());
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.SettlementSkipped(orders[4].orderId, escrow.SKIP_TERMS_MISMATCH());
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.OrderRefunded(orders[5].orderId, orders[5].buyer, address(0), PRICE, false);
        vm.prank(operator);
        escrow.refundBatch(orders);

        vm.assertEq(uint256(_status(orders[0].orderId)), uint256(LiandongEscrow.Status.Refunded), "0 refunded");
        vm.assertEq(uint256(_status(orders[2].orderId)), uint256(LiandongEscrow.Status.Delivered), "2 stays delivered");
        vm.assertEq(uint256(_status(orders[4].orderId)), uint256(LiandongEscrow.Status.Paid), "4 stays paid");
        vm.assertEq(uint256(_status(orders[5].orderId)), uint256(LiandongEscrow.Status.Refunded), "5 refunded");
        // Still held: the delivered order, the forged one, and order 3 (only an unknown id was sent).
        vm.assertEq(address(escrow).balance, 3 * PRICE, "escrow keeps what was not refunded");
    }

    /// @dev A delivery batch holding a refunded order, an unknown id, forged terms and a late order:
    /// each is skipped with its reason (1 to 4), the rest are delivered and credited.
    function test_DeliveryBatchSkipsWhatItCannotDeliver() public {
        LiandongEscrow.Delivery[] memory deliveries = new LiandongEscrow.Delivery[](6);
        for (uint256 i; i < deliveries.length; ++i) {
            deliveries[i].order = _pay(buyer, address(0), PRICE);
            deliveries[i].commitment = keccak256(abi.encode(i));
        }
        vm.prank(operator);
        escrow.refund(deliveries[1].order);
        deliveries[2].order.orderId = keccak256("never paid");
        deliveries[3].order.feeBps = 0;
        // Order 4 has an earlier deadline than the others, which has passed by the time of the batch.
        LiandongEscrow.Quote memory early = _quote(bytes32(_nextId++), address(0), PRICE, buyer);
        early.deliveryDeadline = early.expiry + escrow.MIN_DELIVERY_WINDOW();
        bytes memory signature = _sign(early);
        vm.deal(buyer, PRICE);
        vm.prank(buyer);
        escrow.pay{value: PRICE}(early, signature);
        deliveries[4].order = _orderOf(early, buyer, INITIAL_FEE_BPS);
        vm.warp(early.deliveryDeadline + 1);

        vm.expectEmit(address(escrow));
        emit LiandongEscrow.SettlementSkipped(deliveries[1].order.orderId, 3);
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.SettlementSkipped(deliveries[2].order.orderId, 1);
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.SettlementSkipped(deliveries[3].order.orderId, 2);
        vm.expectEmit(address(escrow));
        emit LiandongEscrow.SettlementSkipped(deliveries[4].order.orderId, 4);
        vm.prank(operator);
        escrow.recordDeliveries(deliveries);

        uint256 fee = PRICE * INITIAL_FEE_BPS / 10_000;
        vm.assertEq(uint256(_status(deliveries[0].order.orderId)), uint256(LiandongEscrow.Status.Delivered), "0");
        vm.assertEq(uint256(_status(deliveries[5].order.orderId)), uint256(LiandongEscrow.Status.Delivered), "5");
        vm.assertEq(
            uint256(_status(deliveries[4].order.orderId)), uint256(LiandongEscrow.Status.Paid), "late stays paid"
        );
        vm.assertEq(escrow.merchantBalance(address(0)), 2 * (PRICE - fee), "two deliveries credited");
        vm.assertEq(escrow.feeBalance(address(0), feeRecipient), 2 * fee, "two fees");
    }

    // ------------------------------------------------------------- gas starvation

    /// @dev A refund sent with too little gas left for the full stipend (a low gas limit, a gas
    /// estimate searching downwards) reverts instead of crediting: an honest smart wallet is never
    /// credited for want of gas. Tried over a range of gas limits: each either reverts or sends.
    function test_StarvedRefundRevertsInsteadOfCrediting() public {
        address wallet = address(new SafeLikeProxy(address(new SafeLikeSingleton())));
        (uint256 gasLimit,) = _lowestGasLimitThatSettles(wallet);
        vm.assertTrue(gasLimit < 200_000, "the refund went through at some gas limit");
        vm.assertEq(wallet.balance, PRICE, "sent");
        vm.assertEq(escrow.refundCredit(address(0), wallet), 0, "never credited");

        // A buyer that burns all it gets: below the full stipend the escrow itself refuses
        // (InsufficientRefundGas); it is credited only once it had the whole stipend to burn.
        GasBurner burner = new GasBurner();
        uint256 starved;
        (gasLimit, starved) = _lowestGasLimitThatSettles(address(burner));
        vm.assertGt(starved, 0, "starved sends reverted with InsufficientRefundGas");
        vm.assertGt(gasLimit, escrow.REFUND_GAS_STIPEND() * 64 / 63, "credited only with the whole stipend");
        vm.assertEq(escrow.refundCredit(address(0), address(burner)), PRICE, "then credited");
    }

    /// @dev Pays an order from `payer` and sends its refund batch with rising gas limits until it
    /// goes through; returns that limit and how many tries reverted with InsufficientRefundGas.
    function _lowestGasLimitThatSettles(address payer) private returns (uint256 gasLimit, uint256 starved) {
        LiandongEscrow.Order[] memory orders = new LiandongEscrow.Order[](1);
        orders[0] = _pay(payer, address(0), PRICE);
        bytes memory batchCall = abi.encodeCall(escrow.refundBatch, (orders));
        bytes32 insufficient = keccak256(abi.encodePacked(LiandongEscrow.InsufficientRefundGas.selector));
        for (gasLimit = 10_000; gasLimit < 200_000; gasLimit += 200) {
            vm.prank(operator);
            (bool ok, bytes memory reason) = address(escrow).call{gas: gasLimit}(batchCall);
            if (ok) break;
            if (keccak256(reason) == insufficient) ++starved;
            vm.assertEq(uint256(_status(orders[0].orderId)), uint256(LiandongEscrow.Status.Paid), "reverted whole");
        }
    }
}
