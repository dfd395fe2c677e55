// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {LiandongEscrow} from "../../contracts/LiandongEscrow.sol";
import {MintableToken, NoReturnToken, RefusingReceiver} from "../../contracts/TestTokens.sol";
import {EscrowHelpers, InvariantBase, TestBase} from "./TestBase.sol";

/**
 * @notice Drives the escrow through random sequences of the calls its roles make, and keeps
 * ghost accounting of what the escrow should hold. Inputs are bounded to calls that should
 * succeed (an order to settle is picked among the open ones, a withdrawal only when there is
 * something to withdraw), so that the runner spends its depth on state changes rather than on
 * reverts. Calls that must fail (a second payment of an order id, a second settlement, a payment
 * while paused) are tried with their outcome recorded in a violation counter, because the
 * runner ignores reverts (`fail_on_revert = false`); the invariants then require the counters to
 * stay at zero.
 */
contract EscrowHandler is EscrowHelpers {
    /// @dev Large enough for 18-decimal prices, small enough that sums over a run cannot overflow.
    uint256 private constant MAX_AMOUNT = 1e27;
    uint256 private constant MAX_BATCH = 5;

    LiandongEscrow public immutable escrow;
    MintableToken public immutable token;
    NoReturnToken public immutable usdt;
    /// @notice A buyer that refuses the native coin while told to, so refunds get credited.
    RefusingReceiver public immutable contractBuyer;

    uint256 private immutable _operatorKey;
    address private immutable _operator;
    address private immutable _owner;
    address private immutable _payout;
    address private immutable _feeRecipient;

    address[3] private _tokens;
    address[4] private _buyers;

    /// @notice Every order ever paid, in payment order.
    LiandongEscrow.Order[] private _orders;
    /// @dev Indexes into `_orders` of the orders still Paid, and of those settled.
    uint256[] private _open;
    uint256[] private _settled;
    uint256 private _nextOrderId = 1;

    /// @notice Ghost: the sum of the amounts of Paid orders, by token.
    mapping(address token => uint256 amount) public escrowed;
    /// @notice Ghost: successful settlements (delivery or refund) per order id.
    mapping(bytes32 orderId => uint256 count) public settlements;
    /// @notice Violations: payments of an already used order id that went through.
    uint256 public duplicatePayments;
    /// @notice Violations: payments accepted while the escrow was paused.
    uint256 public paymentsWhilePaused;

    constructor(
        LiandongEscrow escrow_,
        uint256 operatorKey,
        address owner_,
        address payout_,
        address feeRecipient_,
        MintableToken token_,
        NoReturnToken usdt_
    ) {
        (escrow, token, usdt, contractBuyer) = (escrow_, token_, usdt_, new RefusingReceiver());
        (_operatorKey, _operator) = (operatorKey, vm.addr(operatorKey));
        (_owner, _payout, _feeRecipient) = (owner_, payout_, feeRecipient_);
        _tokens = [address(0), address(token_), address(usdt_)];
        _buyers = [address(0xB001), address(0xB002), address(0xB003), address(contractBuyer)];
        contractBuyer.setAccepts(true);
        // Unlimited approvals once: USDT-style tokens refuse to change a non-zero allowance.
        for (uint256 i; i < _buyers.length; ++i) {
            _callAs(
                _buyers[i], address(token_), 0, abi.encodeCall(token_.approve, (address(escrow_), type(uint256).max))
            );
            _callAs(_buyers[i], address(usdt_), 0, abi.encodeCall(usdt_.approve, (address(escrow_), type(uint256).max)));
        }
    }

    // ------------------------------------------------------------------ buyers

    /// @notice Pays a fresh order in one of the three tokens; while paused, checks it is refused.
    function pay(uint256 tokenSeed, uint256 buyerSeed, uint256 amount, uint256 deliveryDelay, bool openQuote) external {
        address buyer = _buyers[buyerSeed % _buyers.length];
        LiandongEscrow.Quote memory quote =
            _quote(bytes32(_nextOrderId++), _tokens[tokenSeed % _tokens.length], _bound(amount, 0, MAX_AMOUNT), buyer);
        quote.deliveryDeadline = uint64(block.timestamp + _bound(deliveryDelay, 0, 30 days));
        if (openQuote) quote.buyer = address(0);
        bool paused = escrow.paused();

        (bool ok, bytes memory result) = _payAs(buyer, quote);
        if (paused) {
            bool refusedAsPaused =
                keccak256(result) == keccak256(abi.encodePacked(LiandongEscrow.PaymentsArePaused.selector));
            if (ok || !refusedAsPaused) ++paymentsWhilePaused;
            return;
        }
        _bubble(ok, result);
        _orders.push(_orderOf(quote, buyer));
        _open.push(_orders.length - 1);
        escrowed[quote.token] += quote.amount;
    }

    /// @notice Tries to pay a new quote under an order id already used; it must never go through.
    function payUsedOrderId(uint256 orderSeed, uint256 tokenSeed, uint256 buyerSeed, uint256 amount) external {
        if (_orders.length == 0 || escrow.paused()) return;
        bytes32 usedId = _orders[orderSeed % _orders.length].orderId;
        address buyer = _buyers[buyerSeed % _buyers.length];
        LiandongEscrow.Quote memory quote =
            _quote(usedId, _tokens[tokenSeed % _tokens.length], _bound(amount, 0, MAX_AMOUNT), buyer);
        (bool ok,) = _payAs(buyer, quote);
        if (ok) ++duplicatePayments;
    }

    /// @notice The buyer takes back an order after its deadline (time is moved past it).
    function refundAsBuyer(uint256 orderSeed, uint256 extraTime) external {
        if (_open.length == 0) return;
        LiandongEscrow.Order memory order = _takeOpen(orderSeed);
        if (block.timestamp <= order.deliveryDeadline) vm.warp(order.deliveryDeadline + 1);
        vm.warp(block.timestamp + _bound(extraTime, 0, 1 days));
        (bool ok, bytes memory result) =
            _callAs(order.buyer, address(escrow), 0, abi.encodeCall(escrow.refund, (order)));
        _bubble(ok, result);
        _recordSettlement(order);
    }

    /// @notice A buyer claims credited refunds, after making their account able to receive them.
    function claimRefund(uint256 buyerSeed, uint256 tokenSeed) external {
        address buyer = _buyers[buyerSeed % _buyers.length];
        address tokenAddress = _tokens[tokenSeed % _tokens.length];
        if (escrow.refundCredit(tokenAddress, buyer) == 0) return;
        contractBuyer.setAccepts(true);
        usdt.setBlocked(buyer, false);
        (bool ok, bytes memory result) =
            _callAs(buyer, address(escrow), 0, abi.encodeCall(escrow.claimRefund, (tokenAddress)));
        _bubble(ok, result);
    }

    /// @notice Makes a buyer's account refuse refunds (or accept them again), so refunds to it
    /// are credited: the contract buyer refuses the native coin, the others get USDT-blocked.
    function setBuyerRefuses(uint256 buyerSeed, bool refuses) external {
        address buyer = _buyers[buyerSeed % _buyers.length];
        if (buyer == address(contractBuyer)) contractBuyer.setAccepts(!refuses);
        else usdt.setBlocked(buyer, refuses);
    }

    // ---------------------------------------------------------------- operator

    function recordDelivery(uint256 orderSeed, bytes32 commitment) external {
        if (_open.length == 0) return;
        LiandongEscrow.Order memory order = _takeOpen(orderSeed);
        vm.prank(_operator);
        escrow.recordDelivery(order, commitment);
        _recordSettlement(order);
    }

    function recordDeliveries(uint256 orderSeed, uint256 count) external {
        if (_open.length == 0) return;
        LiandongEscrow.Delivery[] memory deliveries = new LiandongEscrow.Delivery[](_bound(count, 1, _maxBatch()));
        for (uint256 i; i < deliveries.length; ++i) {
            deliveries[i].order = _takeOpen(uint256(keccak256(abi.encode(orderSeed, i))));
            deliveries[i].commitment = keccak256(abi.encode(deliveries[i].order.orderId));
        }
        vm.prank(_operator);
        escrow.recordDeliveries(deliveries);
        for (uint256 i; i < deliveries.length; ++i) {
            _recordSettlement(deliveries[i].order);
        }
    }

    function refund(uint256 orderSeed) external {
        if (_open.length == 0) return;
        LiandongEscrow.Order memory order = _takeOpen(orderSeed);
        vm.prank(_operator);
        escrow.refund(order);
        _recordSettlement(order);
    }

    function refundBatch(uint256 orderSeed, uint256 count) external {
        if (_open.length == 0) return;
        LiandongEscrow.Order[] memory orders = new LiandongEscrow.Order[](_bound(count, 1, _maxBatch()));
        for (uint256 i; i < orders.length; ++i) {
            orders[i] = _takeOpen(uint256(keccak256(abi.encode(orderSeed, i))));
        }
        vm.prank(_operator);
        escrow.refundBatch(orders);
        for (uint256 i; i < orders.length; ++i) {
            _recordSettlement(orders[i]);
        }
    }

    /// @notice Tries to settle an already settled order again, in any of the four ways. A success
    /// is counted in {settlements}, which the invariant requires to stay at most 1.
    function settleAgain(uint256 orderSeed, uint256 how) external {
        if (_settled.length == 0) return;
        LiandongEscrow.Order memory order = _orders[_settled[orderSeed % _settled.length]];
        how %= 4;
        vm.prank(_operator);
        if (how == 0) {
            try escrow.recordDelivery(order, bytes32(0)) {
                ++settlements[order.orderId];
            } catch {}
        } else if (how == 1) {
            LiandongEscrow.Delivery[] memory deliveries = new LiandongEscrow.Delivery[](1);
            deliveries[0].order = order;
            try escrow.recordDeliveries(deliveries) {
                ++settlements[order.orderId];
            } catch {}
        } else if (how == 2) {
            try escrow.refund(order) {
                ++settlements[order.orderId];
            } catch {}
        } else {
            LiandongEscrow.Order[] memory orders = new LiandongEscrow.Order[](1);
            orders[0] = order;
            try escrow.refundBatch(orders) {
                ++settlements[order.orderId];
            } catch {}
        }
    }

    // ---------------------------------------------------------- merchant, owner

    function withdraw(uint256 tokenSeed, bool byOwner) external {
        address tokenAddress = _tokens[tokenSeed % _tokens.length];
        if (escrow.merchantBalance(tokenAddress) == 0) return;
        vm.prank(byOwner ? _owner : _payout);
        escrow.withdraw(tokenAddress);
    }

    function withdrawFees(uint256 tokenSeed, bool byOwner) external {
        address tokenAddress = _tokens[tokenSeed % _tokens.length];
        if (escrow.feeBalance(tokenAddress) == 0) return;
        vm.prank(byOwner ? _owner : _feeRecipient);
        escrow.withdrawFees(tokenAddress);
    }

    /// @notice Pauses one time in four and unpauses otherwise, so that most payments are live.
    function setPaused(uint256 seed) external {
        vm.prank(_owner);
        if (seed % 4 == 0) escrow.pause();
        else escrow.unpause();
    }

    function setFee(uint256 feeBps) external {
        uint16 newFeeBps = uint16(_bound(feeBps, 0, escrow.MAX_FEE_BPS()));
        vm.prank(_owner);
        escrow.setFee(_feeRecipient, newFeeBps);
    }

    // ------------------------------------------------------------------- views

    function ordersCount() external view returns (uint256) {
        return _orders.length;
    }

    function orderAt(uint256 index) external view returns (LiandongEscrow.Order memory) {
        return _orders[index];
    }

    function tokens() external view returns (address[3] memory) {
        return _tokens;
    }

    function buyers() external view returns (address[4] memory) {
        return _buyers;
    }

    // ---------------------------------------------------------------- internal

    /// @dev Funds `buyer` with the quote's amount and pays it from `buyer`'s account.
    function _payAs(address buyer, LiandongEscrow.Quote memory quote) private returns (bool, bytes memory) {
        if (quote.token == address(token)) token.mint(buyer, quote.amount);
        if (quote.token == address(usdt)) usdt.mint(buyer, quote.amount);
        uint256 value = quote.token == address(0) ? quote.amount : 0;
        bytes memory signature = _signQuote(escrow, _operatorKey, quote);
        return _callAs(buyer, address(escrow), value, abi.encodeCall(escrow.pay, (quote, signature)));
    }

    /// @dev Calls `target` with `account` as the sender: through `execute` for the contract
    /// buyer (so that it really is a contract), by prank for the others.
    function _callAs(address account, address target, uint256 value, bytes memory data)
        private
        returns (bool ok, bytes memory result)
    {
        if (account == address(contractBuyer)) {
            vm.deal(address(this), value);
            try contractBuyer.execute{value: value}(target, data) returns (bytes memory returned) {
                return (true, returned);
            } catch (bytes memory reason) {
                return (false, reason);
            }
        }
        vm.deal(account, value);
        vm.prank(account);
        (ok, result) = target.call{value: value}(data);
    }

    /// @dev Re-raises a failed call's revert, so the runner counts the handler call as reverted.
    function _bubble(bool ok, bytes memory result) private pure {
        if (ok) return;
        assembly ("memory-safe") {
            revert(add(result, 32), mload(result))
        }
    }

    /// @dev Removes a pseudo-random open order from the open set and returns it.
    function _takeOpen(uint256 seed) private returns (LiandongEscrow.Order memory) {
        uint256 position = seed % _open.length;
        uint256 index = _open[position];
        _open[position] = _open[_open.length - 1];
        _open.pop();
        _settled.push(index);
        return _orders[index];
    }

    function _recordSettlement(LiandongEscrow.Order memory order) private {
        escrowed[order.token] -= order.amount;
        ++settlements[order.orderId];
    }

    function _maxBatch() private view returns (uint256) {
        return _open.length < MAX_BATCH ? _open.length : MAX_BATCH;
    }
}

/// @notice The escrow's accounting invariants over random sequences of {EscrowHandler} calls.
/// Each sequence is 128 calls deep (twice the profile's depth) so that orders pile up, settle,
/// get credited and claimed within one sequence.
contract EscrowInvariantTest is TestBase, InvariantBase {
    EscrowHandler private handler;

    function setUp() public {
        _deployEscrow();
        MintableToken token = new MintableToken("Test Token", "TT", 18);
        NoReturnToken usdt = new NoReturnToken();
        handler = new EscrowHandler(escrow, OPERATOR_KEY, owner, payout, feeRecipient, token, usdt);

        _targetContract(address(handler));
        // The runner picks uniformly among the listed selectors, duplicates included (checked with
        // forge 1.7's invariant metrics), so `pay` is listed four times: orders are then paid
        // about as fast as the six settling actions consume them.
        bytes4[] memory selectors = new bytes4[](17);
        selectors[0] = EscrowHandler.pay.selector;
        selectors[1] = EscrowHandler.pay.selector;
        selectors[2] = EscrowHandler.pay.selector;
        selectors[3] = EscrowHandler.pay.selector;
        selectors[4] = EscrowHandler.payUsedOrderId.selector;
        selectors[5] = EscrowHandler.refundAsBuyer.selector;
        selectors[6] = EscrowHandler.claimRefund.selector;
        selectors[7] = EscrowHandler.setBuyerRefuses.selector;
        selectors[8] = EscrowHandler.recordDelivery.selector;
        selectors[9] = EscrowHandler.recordDeliveries.selector;
        selectors[10] = EscrowHandler.refund.selector;
        selectors[11] = EscrowHandler.refundBatch.selector;
        selectors[12] = EscrowHandler.settleAgain.selector;
        selectors[13] = EscrowHandler.withdraw.selector;
        selectors[14] = EscrowHandler.withdrawFees.selector;
        selectors[15] = EscrowHandler.setPaused.selector;
        selectors[16] = EscrowHandler.setFee.selector;
        _targetSelectorsOf(address(handler), selectors);
    }

    /// @notice Every unit the escrow holds is owed to someone: an open order's buyer, the
    /// merchant, the platform, or a buyer whose refund was credited. Nothing more, nothing less.
    /// forge-config: default.invariant.depth = 128
    function invariant_balanceEqualsWhatIsOwed() public view {
        address[3] memory tokens = handler.tokens();
        address[4] memory buyers = handler.buyers();
        for (uint256 t; t < tokens.length; ++t) {
            address tokenAddress = tokens[t];
            uint256 credited;
            for (uint256 b; b < buyers.length; ++b) {
                credited += escrow.refundCredit(tokenAddress, buyers[b]);
            }
            uint256 owed = handler.escrowed(tokenAddress) + escrow.merchantBalance(tokenAddress)
                + escrow.feeBalance(tokenAddress) + credited;
            uint256 held = tokenAddress == address(0)
                ? address(escrow).balance
                : MintableToken(tokenAddress).balanceOf(address(escrow));
            vm.assertEq(held, owed, "escrow balance != escrowed + merchant + fees + refund credit");
        }
    }

    /// @notice No order is settled twice, and an order is Paid exactly when it was never settled.
    /// forge-config: default.invariant.depth = 128
    function invariant_ordersSettleAtMostOnce() public view {
        for (uint256 i; i < handler.ordersCount(); ++i) {
            bytes32 orderId = handler.orderAt(i).orderId;
            uint256 count = handler.settlements(orderId);
            vm.assertTrue(count <= 1, "order settled more than once");
            (LiandongEscrow.Status status,) = escrow.orderStatus(orderId);
            vm.assertTrue((status == LiandongEscrow.Status.Paid) == (count == 0), "status disagrees with settlements");
        }
    }

    /// @notice The ghost escrowed amount per token is the sum over orders the escrow says are Paid.
    /// forge-config: default.invariant.depth = 128
    function invariant_escrowedMatchesPaidOrders() public view {
        address[3] memory tokens = handler.tokens();
        uint256[3] memory paidSum;
        for (uint256 i; i < handler.ordersCount(); ++i) {
            LiandongEscrow.Order memory order = handler.orderAt(i);
            (LiandongEscrow.Status status,) = escrow.orderStatus(order.orderId);
            if (status != LiandongEscrow.Status.Paid) continue;
            for (uint256 t; t < tokens.length; ++t) {
                if (order.token == tokens[t]) paidSum[t] += order.amount;
            }
        }
        for (uint256 t; t < tokens.length; ++t) {
            vm.assertEq(paidSum[t], handler.escrowed(tokens[t]), "escrowed ghost != sum of Paid orders");
        }
    }

    /// @notice An order id pays once, and nothing pays while the escrow is paused.
    /// forge-config: default.invariant.depth = 128
    function invariant_refusedPaymentsStayRefused() public view {
        vm.assertEq(handler.duplicatePayments(), 0, "an order id was paid twice");
        vm.assertEq(handler.paymentsWhilePaused(), 0, "a payment went through while paused");
    }
}
