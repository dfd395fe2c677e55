// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {LiandongEscrow} from "../../contracts/LiandongEscrow.sol";
import {MintableToken, NoReturnToken, RefusingReceiver} from "../../contracts/TestTokens.sol";
import {
    ForceSender,
    GasBurner,
    HookToken,
    ReentrantBuyer,
    ReturnBomb,
    SafeLikeProxy,
    SafeLikeSingleton
} from "./Actors.sol";
import {EscrowHelpers, InvariantBase, TestBase, VmLog} from "./TestBase.sol";

/**
 * @notice Drives the escrow through random sequences of what its roles do, with hostile buyers
 * (one burns all the gas it gets, one returns or reverts with 300 KB, one re-enters, one refuses
 * the native coin, a Safe-like wallet behind a proxy), four tokens (native, standard with permit,
 * USDT-style, one that calls its holders on transfer), direct donations, operator rotation and
 * revocation, delayed payout changes, and fee changes between payment and delivery.
 *
 * Every handler makes only calls that must succeed, and foundry.toml runs the invariants with
 * `fail_on_revert = true`: a refund batch that a buyer can make revert, a delivery that cannot be
 * recorded in its window, a claim that cannot be paid out, all fail the campaign. Calls that must
 * fail (a second payment of an order id, a payment while paused or with no operator, a settlement
 * of a settled order, a late delivery, a payout change applied early) are tried inside the handler
 * and any that goes through is a violation; batches are checked to skip exactly the orders they
 * must, with the reason they must.
 *
 * Ghosts keep, independently of the escrow's own bookkeeping, what each party must have received:
 * each buyer what was refunded to it, the payout addresses what was delivered less fees, each fee
 * recipient the fees of the deliveries recorded while it was the recipient.
 */
contract EscrowHandler is EscrowHelpers {
    /// @dev Large enough for 18-decimal prices, small enough that sums over a run cannot overflow.
    uint256 private constant MAX_AMOUNT = 1e27;
    uint256 private constant MAX_BATCH = 6;
    uint256 private constant PERMIT_BUYER_KEY = 0xB0B0B0;
    bytes32 private constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
    bytes32 private constant SKIPPED_TOPIC = keccak256("SettlementSkipped(bytes32,uint8)");
    /// @dev The gas a refund is given per order, as a shop's sender would budget it: the token bound
    /// (the costlier one) and 60,000 for the rest. Refunds run with this limit, so an unbounded send
    /// to a gas-burning buyer (it would take 63/64 of all the gas) fails the campaign.
    uint256 private constant REFUND_GAS_PER_ORDER = 150_000 + 60_000;

    uint8 private constant PAID = 1;
    uint8 private constant DELIVERED = 2;
    uint8 private constant REFUNDED = 3;

    LiandongEscrow public immutable escrow;
    MintableToken public immutable token;
    NoReturnToken public immutable usdt;
    HookToken public immutable hookToken;
    RefusingReceiver public immutable refusingBuyer;
    GasBurner public immutable gasBurner;
    ReturnBomb public immutable returnBomb;
    ReentrantBuyer public immutable reentrantBuyer;
    address public immutable safeBuyer;
    address public immutable permitBuyer;
    /// @notice Where credits are claimed to when the buyer's own account cannot receive them.
    address public immutable rescue = address(0x7E5C0E);
    address private immutable _owner;
    address private immutable _stranger = address(0x5742);

    address[4] private _tokens;
    /// @dev 0, 1: plain accounts; 2: refuses the native coin when told; 3: burns gas; 4: return bomb;
    /// 5: re-enters; 6: Safe-like wallet. The permit buyer pays only with permits.
    address[7] private _buyers;
    address[3] private _payouts;
    address[3] private _feeRecipients;
    uint256[3] private _operatorKeys;

    struct GhostOrder {
        LiandongEscrow.Order order;
        uint8 state;
    }

    GhostOrder[] private _orders;
    uint256[] private _open;
    /// @dev Position + 1 in `_open` of an order index still Paid, 0 once settled.
    mapping(uint256 index => uint256 position) private _openPosition;
    uint256[] private _settled;
    mapping(bytes32 orderId => uint256 index) private _indexPlusOne;
    uint256 private _nextOrderId = 1;

    // Roles as the handler set them, checked against the escrow's.
    address public ghostOperator;
    /// @dev The key of the current operator, or of the last one if it was revoked.
    uint256 private _operatorKey;
    address public ghostPayout;
    address public ghostPendingPayout;
    uint64 public ghostPendingPayoutAt;
    address public ghostFeeRecipient;
    uint16 public ghostFeeBps;
    bool public ghostPaused;

    /// @notice Ghost: the sum of the amounts of Paid orders, by token.
    mapping(address token => uint256 amount) public escrowed;
    /// @notice Ghost: what was sent to the escrow outside any order (forced native coin, transfers).
    mapping(address token => uint256 amount) public donated;
    /// @notice Ghost: the amounts of the orders refunded to each buyer, by token.
    mapping(address buyer => mapping(address token => uint256 amount)) public refunded;
    /// @notice Ghost: credits a buyer claimed to {rescue} rather than to itself.
    mapping(address buyer => mapping(address token => uint256 amount)) public claimedAway;
    /// @notice Ghost: delivered amounts less their fees, by token: the payout addresses' due.
    mapping(address token => uint256 amount) public deliveredNet;
    /// @notice Ghost: the fees of deliveries recorded while `recipient` was the fee recipient.
    mapping(address recipient => mapping(address token => uint256 amount)) public feesAccrued;
    /// @notice Successful settlements per order id (must stay at most 1).
    mapping(bytes32 orderId => uint256 count) public settlements;
    /// @notice Calls that must fail and went through; see the contract's notice.
    uint256 public violations;

    constructor(
        LiandongEscrow escrow_,
        uint256 operatorKey,
        address owner_,
        address payout_,
        address feeRecipient_,
        uint16 feeBps_
    ) {
        escrow = escrow_;
        token = new MintableToken("Test Token", "TT", 18);
        usdt = new NoReturnToken();
        hookToken = new HookToken();
        refusingBuyer = new RefusingReceiver();
        gasBurner = new GasBurner();
        returnBomb = new ReturnBomb();
        reentrantBuyer = new ReentrantBuyer(address(escrow_));
        SafeLikeSingleton singleton = new SafeLikeSingleton();
        safeBuyer = address(new SafeLikeProxy(address(singleton)));
        permitBuyer = vm.addr(PERMIT_BUYER_KEY);
        _owner = owner_;
        _tokens = [address(0), address(token), address(usdt), address(hookToken)];
        _buyers = [
            address(0xB001),
            address(0xB002),
            address(refusingBuyer),
            address(gasBurner),
            address(returnBomb),
            address(reentrantBuyer),
            safeBuyer
        ];
        _payouts = [payout_, address(0x9A0002), address(new SafeLikeProxy(address(singleton)))];
        _feeRecipients = [feeRecipient_, address(0xFEE002), address(0xFEE003)];
        _operatorKeys = [operatorKey, operatorKey + 1, operatorKey + 2];
        (ghostOperator, _operatorKey) = (vm.addr(operatorKey), operatorKey);
        (ghostPayout, ghostFeeRecipient, ghostFeeBps) = (payout_, feeRecipient_, feeBps_);

        refusingBuyer.setAccepts(true);
        // The hostile buyers take the hook token's calls; the re-entrant one re-enters from them.
        _callAs(address(gasBurner), address(hookToken), 0, abi.encodeCall(hookToken.registerHook, (true)));
        _callAs(address(returnBomb), address(hookToken), 0, abi.encodeCall(hookToken.registerHook, (true)));
        _callAs(address(reentrantBuyer), address(hookToken), 0, abi.encodeCall(hookToken.registerHook, (true)));
        // Unlimited approvals once: USDT-style tokens refuse to change a non-zero allowance.
        for (uint256 i; i < _buyers.length; ++i) {
            for (uint256 t = 1; t < _tokens.length; ++t) {
                _callAs(
                    _buyers[i],
                    _tokens[t],
                    0,
                    abi.encodeWithSignature("approve(address,uint256)", address(escrow_), type(uint256).max)
                );
            }
        }
    }

    // ------------------------------------------------------------------ buyers

    /// @notice Pays a fresh order; while paused or without an operator, checks that it is refused.
    function pay(uint256 tokenSeed, uint256 buyerSeed, uint256 amount, uint256 window, bool openQuote) external {
        address buyer = _buyers[buyerSeed % _buyers.length];
        LiandongEscrow.Quote memory quote = _newQuote(_tokens[tokenSeed % _tokens.length], amount, window, buyer);
        if (openQuote) quote.buyer = address(0);
        if (_refusesPayments(buyer, quote)) return;
        (bool ok, bytes memory result) = _payAs(buyer, quote, true);
        _bubble(ok, result);
        _recordPayment(quote, buyer);
    }

    /// @notice Pays with an EIP-2612 permit, sometimes front-run by a stranger who submits it first.
    function payWithPermit(uint256 amount, uint256 window, bool frontRun) external {
        LiandongEscrow.Quote memory quote = _newQuote(address(token), amount, window, permitBuyer);
        if (_refusesPayments(permitBuyer, quote)) return;
        token.mint(permitBuyer, quote.amount);
        uint256 deadline = block.timestamp + 1 hours;
        bytes32 permitHash = keccak256(
            abi.encode(PERMIT_TYPEHASH, permitBuyer, address(escrow), quote.amount, token.nonces(permitBuyer), deadline)
        );
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(PERMIT_BUYER_KEY, keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), permitHash)));
        if (frontRun) {
            vm.prank(_stranger);
            token.permit(permitBuyer, address(escrow), quote.amount, deadline, v, r, s);
        }
        bytes memory signature = _signQuote(escrow, _operatorKey, quote);
        vm.prank(permitBuyer);
        escrow.payWithPermit(quote, signature, LiandongEscrow.Permit({deadline: deadline, v: v, r: r, s: s}));
        _recordPayment(quote, permitBuyer);
    }

    /// @notice Tries to pay a new quote under an order id already used; it must never go through.
    function payUsedOrderId(uint256 orderSeed, uint256 tokenSeed, uint256 buyerSeed, uint256 amount) external {
        if (_orders.length == 0 || ghostPaused || ghostOperator == address(0)) return;
        address buyer = _buyers[buyerSeed % _buyers.length];
        LiandongEscrow.Quote memory quote = _newQuote(_tokens[tokenSeed % _tokens.length], amount, 0, buyer);
        quote.orderId = _orders[orderSeed % _orders.length].order.orderId;
        (bool ok, bytes memory result) = _payAs(buyer, quote, false);
        _expectRefused(ok, result, abi.encodeWithSelector(LiandongEscrow.OrderAlreadyExists.selector, quote.orderId));
    }

    /// @notice The buyer takes back an order: refused up to its deadline, then time moves past it.
    function refundAsBuyer(uint256 orderSeed, uint256 extraTime) external {
        if (_open.length == 0) return;
        uint256 index = _open[orderSeed % _open.length];
        LiandongEscrow.Order memory order = _orders[index].order;
        bytes memory call = abi.encodeCall(escrow.refund, (order));
        if (block.timestamp <= order.deliveryDeadline) {
            (bool early, bytes memory reason) = _callAs(order.buyer, address(escrow), 0, call);
            _expectRefused(
                early,
                reason,
                abi.encodeWithSelector(
                    LiandongEscrow.DeadlineNotReached.selector, order.orderId, order.deliveryDeadline
                )
            );
            vm.warp(uint256(order.deliveryDeadline) + 1 + _bound(extraTime, 0, 1 days));
        }
        (bool ok, bytes memory result) = _callAs(order.buyer, address(escrow), 0, call, _refundGas(1));
        _bubble(ok, result);
        _settle(index, REFUNDED);
    }

    /// @notice A buyer claims its credited refunds, to itself when its account can take them,
    /// else (or when it chooses to) to {rescue}.
    function claimRefund(uint256 buyerSeed, uint256 tokenSeed, bool toSelf) external {
        address[8] memory accounts = _parties();
        for (uint256 i; i < accounts.length * _tokens.length; ++i) {
            address buyer = accounts[(buyerSeed % accounts.length + i / _tokens.length) % accounts.length];
            address tokenAddress = _tokens[(tokenSeed % _tokens.length + i) % _tokens.length];
            uint256 credit = escrow.refundCredit(tokenAddress, buyer);
            if (credit == 0) continue;
            address to = toSelf && _canReceive(buyer, tokenAddress) ? buyer : rescue;
            uint256 before = _balanceOf(tokenAddress, to);
            (bool ok, bytes memory result) =
                _callAs(buyer, address(escrow), 0, abi.encodeCall(escrow.claimRefund, (tokenAddress, to)));
            _bubble(ok, result);
            vm.assertEq(_balanceOf(tokenAddress, to) - before, credit, "claim paid the whole credit to its receiver");
            if (to != buyer) claimedAway[buyer][tokenAddress] += credit;
            return;
        }
    }

    /// @notice Makes a buyer's account refuse refunds (or accept them again): the refusing wallet
    /// and the native coin, the return bomb's mode, the plain accounts' USDT blocklist.
    function setBuyerRefuses(uint256 buyerSeed, bool refuses) external {
        address buyer = _buyers[buyerSeed % _buyers.length];
        if (buyer == address(refusingBuyer)) refusingBuyer.setAccepts(!refuses);
        else if (buyer == address(returnBomb)) returnBomb.setReverts(refuses);
        else usdt.setBlocked(buyer, refuses);
    }

    // ---------------------------------------------------------------- operator

    /// @notice Records one delivery in its window; with no open window, checks a late one is refused.
    function recordDelivery(uint256 orderSeed, bytes32 commitment) external {
        if (_open.length == 0 || _noOperator()) return;
        (bool found, uint256 index) = _pickDeliverable(orderSeed);
        LiandongEscrow.Order memory order = _orders[index].order;
        vm.prank(ghostOperator);
        if (!found) {
            try escrow.recordDelivery(order, commitment) {
                ++violations;
            } catch (bytes memory reason) {
                _expectReason(
                    reason,
                    abi.encodeWithSelector(
                        LiandongEscrow.DeliveryWindowClosed.selector, order.orderId, order.deliveryDeadline
                    )
                );
            }
            return;
        }
        escrow.recordDelivery(order, commitment);
        _settle(index, DELIVERED);
    }

    /// @notice A batch of deliveries mixing open orders, late ones, settled ones, repeats, unknown
    /// ids and forged terms: the right ones settle, the others are skipped with the right reason.
    function recordDeliveries(uint256 seed, uint256 count) external {
        if (_noOperator()) return;
        LiandongEscrow.Delivery[] memory deliveries = new LiandongEscrow.Delivery[](_bound(count, 1, MAX_BATCH));
        bytes memory expectedSkips;
        for (uint256 i; i < deliveries.length; ++i) {
            (LiandongEscrow.Order memory order, uint8 reason) = _pickForBatch(uint256(keccak256(abi.encode(seed, i))));
            if (reason == 0 && block.timestamp > order.deliveryDeadline) reason = escrow.SKIP_WINDOW_CLOSED();
            if (reason == 0) _settle(_indexOf(order.orderId), DELIVERED);
            else expectedSkips = abi.encodePacked(expectedSkips, order.orderId, reason);
            deliveries[i] = LiandongEscrow.Delivery({order: order, commitment: keccak256(abi.encode(seed, i))});
        }
        vm.recordLogs();
        vm.prank(ghostOperator);
        escrow.recordDeliveries(deliveries);
        _checkSkips(expectedSkips);
    }

    function refund(uint256 orderSeed) external {
        if (_open.length == 0 || _noOperator()) return;
        uint256 index = _open[orderSeed % _open.length];
        LiandongEscrow.Order memory order = _orders[index].order;
        uint256 gasLimit = _refundGas(1);
        vm.prank(ghostOperator);
        escrow.refund{gas: gasLimit}(order);
        _settle(index, REFUNDED);
    }

    /// @notice A refund batch mixing open orders (of hostile buyers too), settled ones, repeats,
    /// unknown ids and forged terms: it never reverts, and skips exactly what it must.
    function refundBatch(uint256 seed, uint256 count) external {
        if (_noOperator()) return;
        LiandongEscrow.Order[] memory orders = new LiandongEscrow.Order[](_bound(count, 1, MAX_BATCH));
        bytes memory expectedSkips;
        for (uint256 i; i < orders.length; ++i) {
            (LiandongEscrow.Order memory order, uint8 reason) = _pickForBatch(uint256(keccak256(abi.encode(seed, i))));
            if (reason == 0) _settle(_indexOf(order.orderId), REFUNDED);
            else expectedSkips = abi.encodePacked(expectedSkips, order.orderId, reason);
            orders[i] = order;
        }
        uint256 gasLimit = _refundGas(orders.length);
        vm.recordLogs();
        vm.prank(ghostOperator);
        escrow.refundBatch{gas: gasLimit}(orders);
        _checkSkips(expectedSkips);
    }

    /// @notice Tries to settle an already settled order again with a single call: it must revert.
    function settleAgain(uint256 orderSeed, bool deliver) external {
        if (_settled.length == 0 || _noOperator()) return;
        LiandongEscrow.Order memory order = _orders[_settled[orderSeed % _settled.length]].order;
        vm.prank(ghostOperator);
        if (deliver) {
            try escrow.recordDelivery(order, bytes32(0)) {
                ++violations;
            } catch {}
        } else {
            try escrow.refund(order) {
                ++violations;
            } catch {}
        }
    }

    // ---------------------------------------------------------- merchant, fees

    function withdraw(uint256 tokenSeed, bool byOwner) external {
        address tokenAddress = _tokens[tokenSeed % _tokens.length];
        if (escrow.merchantBalance(tokenAddress) == 0) return;
        vm.prank(byOwner ? _owner : ghostPayout);
        escrow.withdraw(tokenAddress);
    }

    /// @notice Withdraws the fees accrued to one of the recipients, current or former.
    function withdrawFees(uint256 tokenSeed, uint256 recipientSeed, bool byOwner) external {
        for (uint256 i; i < _feeRecipients.length * _tokens.length; ++i) {
            address recipient =
                _feeRecipients[(recipientSeed % _feeRecipients.length + i / _tokens.length) % _feeRecipients.length];
            address tokenAddress = _tokens[(tokenSeed % _tokens.length + i) % _tokens.length];
            if (escrow.feeBalance(tokenAddress, recipient) == 0) continue;
            vm.prank(byOwner ? _owner : recipient);
            escrow.withdrawFees(tokenAddress, recipient);
            return;
        }
    }

    // ------------------------------------------------------------------- owner

    /// @notice Pauses one time in four and unpauses otherwise, so that most payments are live.
    function setPaused(uint256 seed) external {
        ghostPaused = seed % 4 == 0;
        vm.prank(_owner);
        if (ghostPaused) escrow.pause();
        else escrow.unpause();
    }

    /// @notice Changes the fee and its recipient: paid orders keep their fee, accrued fees their recipient.
    function setFee(uint256 recipientSeed, uint256 feeBps) external {
        ghostFeeRecipient = _feeRecipients[recipientSeed % _feeRecipients.length];
        ghostFeeBps = uint16(_bound(feeBps, 0, escrow.MAX_FEE_BPS()));
        vm.prank(_owner);
        escrow.setFee(ghostFeeRecipient, ghostFeeBps);
    }

    /// @notice The owner sets one of three operator keys (restoring one after a revocation).
    function rotateOperator(uint256 seed) external {
        _operatorKey = _operatorKeys[seed % _operatorKeys.length];
        ghostOperator = vm.addr(_operatorKey);
        vm.prank(_owner);
        escrow.setOperator(ghostOperator);
    }

    /// @notice The operator revokes itself, or the owner revokes it.
    function revokeOperator(bool byOperator) external {
        if (ghostOperator == address(0)) return;
        vm.prank(byOperator ? ghostOperator : _owner);
        escrow.revokeOperator();
        ghostOperator = address(0);
    }

    function proposePayout(uint256 seed) external {
        ghostPendingPayout = _payouts[seed % _payouts.length];
        ghostPendingPayoutAt = uint64(block.timestamp) + escrow.PAYOUT_DELAY();
        vm.prank(_owner);
        escrow.proposePayout(ghostPendingPayout);
    }

    /// @notice The payout address (as a merchant would against a stolen owner key) or the owner cancels.
    function cancelPayout(bool byPayout) external {
        if (ghostPendingPayout == address(0)) return;
        vm.prank(byPayout ? ghostPayout : _owner);
        escrow.cancelPayout();
        (ghostPendingPayout, ghostPendingPayoutAt) = (address(0), 0);
    }

    /// @notice Applies the pending payout change: refused before its time, then time moves on.
    function applyPayout(uint256 extraTime, bool tryEarly) external {
        if (ghostPendingPayout == address(0)) return;
        if (block.timestamp < ghostPendingPayoutAt) {
            if (tryEarly) {
                vm.prank(_stranger);
                try escrow.applyPayout() {
                    ++violations;
                } catch (bytes memory reason) {
                    _expectReason(
                        reason,
                        abi.encodeWithSelector(LiandongEscrow.PayoutChangeNotReady.selector, ghostPendingPayoutAt)
                    );
                }
            }
            vm.warp(ghostPendingPayoutAt + _bound(extraTime, 0, 1 hours));
        }
        vm.prank(_stranger);
        escrow.applyPayout();
        (ghostPayout, ghostPendingPayout, ghostPendingPayoutAt) = (ghostPendingPayout, address(0), 0);
    }

    // --------------------------------------------------------------- outsiders

    /// @notice Forces the native coin on the escrow (it has no `receive`) by self-destruction.
    function donateNative(uint256 amount) external {
        amount = _bound(amount, 1, MAX_AMOUNT);
        vm.deal(address(this), amount);
        new ForceSender{value: amount}(payable(address(escrow)));
        donated[address(0)] += amount;
    }

    /// @notice Transfers tokens straight to the escrow, outside any order.
    function donateToken(uint256 tokenSeed, uint256 amount) external {
        address tokenAddress = _tokens[1 + tokenSeed % (_tokens.length - 1)];
        amount = _bound(amount, 1, MAX_AMOUNT);
        _mint(tokenAddress, address(this), amount);
        (bool ok, bytes memory result) =
            tokenAddress.call(abi.encodeWithSignature("transfer(address,uint256)", address(escrow), amount));
        _bubble(ok, result);
        donated[tokenAddress] += amount;
    }

    function warp(uint256 seconds_) external {
        vm.warp(block.timestamp + _bound(seconds_, 0, 1 days));
    }

    // ------------------------------------------------------------------- views

    function ordersCount() external view returns (uint256) {
        return _orders.length;
    }

    function orderAt(uint256 index) external view returns (LiandongEscrow.Order memory, uint8 state) {
        return (_orders[index].order, _orders[index].state);
    }

    function tokens() external view returns (address[4] memory) {
        return _tokens;
    }

    /// @notice Every account that ever buys: the seven buyers and the permit buyer.
    function parties() external view returns (address[8] memory) {
        return _parties();
    }

    function payouts() external view returns (address[3] memory) {
        return _payouts;
    }

    function feeRecipients() external view returns (address[3] memory) {
        return _feeRecipients;
    }

    function balanceOf(address tokenAddress, address account) external view returns (uint256) {
        return _balanceOf(tokenAddress, account);
    }

    // ---------------------------------------------------------------- internal

    function _newQuote(address tokenAddress, uint256 amount, uint256 window, address buyer)
        private
        returns (LiandongEscrow.Quote memory quote)
    {
        quote = _quote(bytes32(_nextOrderId++), tokenAddress, _bound(amount, 1, MAX_AMOUNT), buyer);
        quote.deliveryDeadline = quote.expiry + escrow.MIN_DELIVERY_WINDOW() + uint64(_bound(window, 0, 30 days));
    }

    /// @dev While paused or without an operator, checks that `quote` is refused, and says so.
    function _refusesPayments(address buyer, LiandongEscrow.Quote memory quote) private returns (bool) {
        if (!ghostPaused && ghostOperator != address(0)) return false;
        (bool ok, bytes memory result) = _payAs(buyer, quote, false);
        bytes4 expected =
            ghostPaused ? LiandongEscrow.PaymentsArePaused.selector : LiandongEscrow.InvalidQuoteSignature.selector;
        _expectRefused(ok, result, abi.encodePacked(expected));
        return true;
    }

    function _recordPayment(LiandongEscrow.Quote memory quote, address buyer) private {
        _orders.push(GhostOrder({order: _orderOf(quote, buyer, ghostFeeBps), state: PAID}));
        _indexPlusOne[quote.orderId] = _orders.length;
        _open.push(_orders.length - 1);
        _openPosition[_orders.length - 1] = _open.length;
        escrowed[quote.token] += quote.amount;
    }

    /// @dev Pays `quote` from `buyer`'s account, funding it first when `fund` (a payment that must
    /// be refused is refused before any transfer, so it is sent unfunded and leaves nothing behind).
    function _payAs(address buyer, LiandongEscrow.Quote memory quote, bool fund) private returns (bool, bytes memory) {
        uint256 value;
        if (fund) {
            if (quote.token == address(0)) value = quote.amount;
            else _mint(quote.token, buyer, quote.amount);
        }
        bytes memory signature = _signQuote(escrow, _operatorKey, quote);
        return _callAs(buyer, address(escrow), value, abi.encodeCall(escrow.pay, (quote, signature)));
    }

    function _mint(address tokenAddress, address to, uint256 amount) private {
        if (tokenAddress == address(token)) token.mint(to, amount);
        else if (tokenAddress == address(usdt)) usdt.mint(to, amount);
        else hookToken.mint(to, amount);
    }

    /// @dev Calls `target` with `account` as the sender: through `execute` for contract accounts
    /// (so that they really are the caller), by prank for the others. The value comes from the
    /// handler for contracts and is added to a plain account's balance, so that a buyer's balance
    /// only ever grows by what the escrow sends it.
    function _callAs(address account, address target, uint256 value, bytes memory data)
        private
        returns (bool ok, bytes memory result)
    {
        return _callAs(account, target, value, data, gasleft());
    }

    /// @dev {_callAs} with at most `gasLimit` for the call.
    function _callAs(address account, address target, uint256 value, bytes memory data, uint256 gasLimit)
        private
        returns (bool ok, bytes memory result)
    {
        if (account.code.length != 0) {
            vm.deal(address(this), value);
            (ok, result) = account.call{value: value, gas: gasLimit}(
                abi.encodeWithSignature("execute(address,bytes)", target, data)
            );
            if (ok) result = abi.decode(result, (bytes));
            return (ok, result);
        }
        vm.deal(account, account.balance + value);
        vm.prank(account);
        (ok, result) = target.call{value: value, gas: gasLimit}(data);
    }

    /// @dev The gas limit for a refund of `count` orders (see {REFUND_GAS_PER_ORDER}).
    function _refundGas(uint256 count) private pure returns (uint256) {
        return 50_000 + count * REFUND_GAS_PER_ORDER;
    }

    /// @dev Moves an open order to `state` in the ghosts: what the escrow owes and to whom.
    function _settle(uint256 index, uint8 state) private {
        GhostOrder storage ghost = _orders[index];
        LiandongEscrow.Order memory order = ghost.order;
        ghost.state = state;
        escrowed[order.token] -= order.amount;
        ++settlements[order.orderId];
        if (state == REFUNDED) {
            refunded[order.buyer][order.token] += order.amount;
        } else {
            uint256 fee = order.amount * order.feeBps / 10_000;
            deliveredNet[order.token] += order.amount - fee;
            feesAccrued[ghostFeeRecipient][order.token] += fee;
        }
        uint256 position = _openPosition[index] - 1;
        uint256 last = _open[_open.length - 1];
        _open[position] = last;
        _openPosition[last] = position + 1;
        _open.pop();
        _openPosition[index] = 0;
        _settled.push(index);
    }

    /// @dev An open order whose delivery window is still open, searched from `seed`; else a late one.
    function _pickDeliverable(uint256 seed) private view returns (bool found, uint256 index) {
        for (uint256 i; i < _open.length; ++i) {
            index = _open[(seed % _open.length + i) % _open.length];
            if (block.timestamp <= _orders[index].order.deliveryDeadline) return (true, index);
        }
        return (false, _open[seed % _open.length]);
    }

    /// @dev An entry for a batch and the reason the escrow must skip it (0: it settles, unless the
    /// caller finds it late): mostly open orders, sometimes settled ones, unknown ids, forged terms.
    function _pickForBatch(uint256 seed) private view returns (LiandongEscrow.Order memory order, uint8 reason) {
        uint256 kind = seed % 16;
        seed >>= 8;
        if (kind == 0 || _orders.length == 0) {
            order = LiandongEscrow.Order(keccak256(abi.encode("unknown", seed)), address(1), address(0), 1, 0, 0);
            return (order, escrow.SKIP_UNKNOWN_ORDER());
        }
        if (kind == 1) {
            order = _orders[seed % _orders.length].order;
            if (seed & 1 == 0) order.amount += 1;
            else order.feeBps = order.feeBps == 0 ? 1 : 0;
            return (order, escrow.SKIP_TERMS_MISMATCH());
        }
        if (kind < 4 || _open.length == 0) {
            uint256 any = seed % _orders.length;
            order = _orders[any].order;
            return (order, _orders[any].state == PAID ? 0 : escrow.SKIP_NOT_PAID());
        }
        order = _orders[_open[seed % _open.length]].order;
    }

    /// @dev Compares the batch's {SettlementSkipped} events with `expected` (`orderId ‖ reason` each).
    function _checkSkips(bytes memory expected) private {
        VmLog[] memory logs = vm.getRecordedLogs();
        bytes memory actual;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(escrow) || logs[i].topics[0] != SKIPPED_TOPIC) continue;
            actual = abi.encodePacked(actual, logs[i].topics[1], abi.decode(logs[i].data, (uint8)));
        }
        vm.assertEq(keccak256(actual), keccak256(expected), "batch skipped other orders than it must");
    }

    function _indexOf(bytes32 orderId) private view returns (uint256) {
        return _indexPlusOne[orderId] - 1;
    }

    /// @dev With the operator revoked, checks that it cannot settle, and says so.
    function _noOperator() private returns (bool) {
        if (ghostOperator != address(0)) return false;
        if (_open.length != 0) {
            address former = vm.addr(_operatorKey);
            vm.prank(former);
            try escrow.recordDelivery(_orders[_open[0]].order, bytes32(0)) {
                ++violations;
            } catch (bytes memory reason) {
                _expectReason(reason, abi.encodeWithSelector(LiandongEscrow.NotOperator.selector, former));
            }
        }
        return true;
    }

    /// @dev Whether `account` takes a transfer of `tokenAddress` when it has all the gas it wants.
    function _canReceive(address account, address tokenAddress) private view returns (bool) {
        if (tokenAddress == address(usdt)) return !usdt.isBlocked(account);
        if (account == address(gasBurner) || account == address(returnBomb)) {
            return tokenAddress != address(0) && tokenAddress != address(hookToken);
        }
        if (account == address(refusingBuyer) && tokenAddress == address(0)) return refusingBuyer.accepts();
        return true;
    }

    function _parties() private view returns (address[8] memory all) {
        for (uint256 i; i < _buyers.length; ++i) {
            all[i] = _buyers[i];
        }
        all[7] = permitBuyer;
    }

    function _balanceOf(address tokenAddress, address account) private view returns (uint256) {
        return tokenAddress == address(0) ? account.balance : IERC20(tokenAddress).balanceOf(account);
    }

    function _expectRefused(bool ok, bytes memory result, bytes memory expected) private {
        if (ok) ++violations;
        else _expectReason(result, expected);
    }

    function _expectReason(bytes memory reason, bytes memory expected) private pure {
        vm.assertEq(keccak256(reason), keccak256(expected), "refused for another reason than expected");
    }

    /// @dev Re-raises a failed call's revert, so that the campaign fails (`fail_on_revert`).
    function _bubble(bool ok, bytes memory result) private pure {
        if (ok) return;
        assembly ("memory-safe") {
            revert(add(result, 32), mload(result))
        }
    }
}

/// @notice The escrow's invariants over random sequences of {EscrowHandler} calls, 128 calls deep
/// (foundry.toml) so that orders pile up, settle, get credited and claimed within one.
/// The three properties are checked by one invariant, so that they share one campaign (each
/// invariant function is a campaign of its own) and the suite stays fast; the assertion messages
/// say which one failed.
contract EscrowInvariantTest is TestBase, InvariantBase {
    EscrowHandler private handler;

    function setUp() public {
        _deployEscrow();
        handler = new EscrowHandler(escrow, OPERATOR_KEY, owner, payout, feeRecipient, INITIAL_FEE_BPS);

        _targetContract(address(handler));
        // The runner picks uniformly among the listed selectors, duplicates included, so paying
        // is listed five times: orders are then paid about as fast as the settling actions take them.
        bytes4[] memory selectors = new bytes4[](28);
        selectors[0] = EscrowHandler.pay.selector;
        selectors[1] = EscrowHandler.pay.selector;
        selectors[2] = EscrowHandler.pay.selector;
        selectors[3] = EscrowHandler.pay.selector;
        selectors[4] = EscrowHandler.payWithPermit.selector;
        selectors[5] = EscrowHandler.payUsedOrderId.selector;
        selectors[6] = EscrowHandler.refundAsBuyer.selector;
        selectors[7] = EscrowHandler.claimRefund.selector;
        selectors[8] = EscrowHandler.claimRefund.selector;
        selectors[9] = EscrowHandler.setBuyerRefuses.selector;
        selectors[10] = EscrowHandler.recordDelivery.selector;
        selectors[11] = EscrowHandler.recordDeliveries.selector;
        selectors[12] = EscrowHandler.recordDeliveries.selector;
        selectors[13] = EscrowHandler.refund.selector;
        selectors[14] = EscrowHandler.refundBatch.selector;
        selectors[15] = EscrowHandler.settleAgain.selector;
        selectors[16] = EscrowHandler.withdraw.selector;
        selectors[17] = EscrowHandler.withdrawFees.selector;
        selectors[18] = EscrowHandler.setPaused.selector;
        selectors[19] = EscrowHandler.setFee.selector;
        selectors[20] = EscrowHandler.rotateOperator.selector;
        selectors[21] = EscrowHandler.revokeOperator.selector;
        selectors[22] = EscrowHandler.proposePayout.selector;
        selectors[23] = EscrowHandler.cancelPayout.selector;
        selectors[24] = EscrowHandler.applyPayout.selector;
        selectors[25] = EscrowHandler.donateNative.selector;
        selectors[26] = EscrowHandler.donateToken.selector;
        selectors[27] = EscrowHandler.warp.selector;
        _targetSelectorsOf(address(handler), selectors);
    }

    function invariant_escrow() public view {
        _balanceEqualsWhatIsOwed();
        _eachPartyGetsItsShare();
        _ordersRolesAndViolations();
    }

    /// @notice Every unit the escrow holds is owed to someone: an open order's buyer, the merchant,
    /// a fee recipient, a buyer whose refund was credited, or it was donated. Nothing more, nothing less.
    function _balanceEqualsWhatIsOwed() private view {
        address[4] memory tokens = handler.tokens();
        address[8] memory buyers = handler.parties();
        address[3] memory recipients = handler.feeRecipients();
        for (uint256 t; t < tokens.length; ++t) {
            address tokenAddress = tokens[t];
            uint256 owed =
                handler.escrowed(tokenAddress) + escrow.merchantBalance(tokenAddress) + handler.donated(tokenAddress);
            for (uint256 b; b < buyers.length; ++b) {
                owed += escrow.refundCredit(tokenAddress, buyers[b]);
            }
            for (uint256 r; r < recipients.length; ++r) {
                owed += escrow.feeBalance(tokenAddress, recipients[r]);
            }
            vm.assertEq(
                handler.balanceOf(tokenAddress, address(escrow)),
                owed,
                "escrow balance != escrowed + merchant + fees + refund credits + donations"
            );
        }
    }

    /// @notice Each party gets exactly its share: every buyer what was refunded to it (sent, still
    /// credited, or claimed elsewhere), the payout addresses what was delivered less fees, each fee
    /// recipient the fees of the deliveries recorded while it was the recipient.
    function _eachPartyGetsItsShare() private view {
        address[4] memory tokens = handler.tokens();
        address[8] memory buyers = handler.parties();
        address[3] memory payouts = handler.payouts();
        address[3] memory recipients = handler.feeRecipients();
        for (uint256 t; t < tokens.length; ++t) {
            address tokenAddress = tokens[t];
            uint256 rescued;
            for (uint256 b; b < buyers.length; ++b) {
                address buyer = buyers[b];
                uint256 claimedAway = handler.claimedAway(buyer, tokenAddress);
                rescued += claimedAway;
                vm.assertEq(
                    handler.balanceOf(tokenAddress, buyer) + escrow.refundCredit(tokenAddress, buyer) + claimedAway,
                    handler.refunded(buyer, tokenAddress),
                    "a buyer got back other than what was refunded to it"
                );
            }
            vm.assertEq(handler.balanceOf(tokenAddress, handler.rescue()), rescued, "claims sent elsewhere");
            uint256 paidOut = escrow.merchantBalance(tokenAddress);
            for (uint256 p; p < payouts.length; ++p) {
                paidOut += handler.balanceOf(tokenAddress, payouts[p]);
            }
            vm.assertEq(paidOut, handler.deliveredNet(tokenAddress), "merchant's due != delivered less fees");
            for (uint256 r; r < recipients.length; ++r) {
                vm.assertEq(
                    escrow.feeBalance(tokenAddress, recipients[r]) + handler.balanceOf(tokenAddress, recipients[r]),
                    handler.feesAccrued(recipients[r], tokenAddress),
                    "a fee recipient's due != fees of the deliveries recorded while it was recipient"
                );
            }
        }
    }

    /// @notice Every order is in the state and under the terms the handler paid and settled it
    /// with, none settled twice; the roles are what the handler set; nothing that must fail went
    /// through, and no re-entry either.
    function _ordersRolesAndViolations() private view {
        for (uint256 i; i < handler.ordersCount(); ++i) {
            (LiandongEscrow.Order memory order, uint8 state) = handler.orderAt(i);
            (LiandongEscrow.Status status, bytes32 termsHash) = escrow.orderStatus(order.orderId);
            vm.assertEq(uint256(status), state, "order status != ghost");
            vm.assertEq(termsHash, escrow.orderTermsHash(order), "stored terms != paid terms");
            vm.assertTrue(handler.settlements(order.orderId) <= 1, "order settled more than once");
        }
        vm.assertEq(escrow.operator(), handler.ghostOperator(), "operator");
        vm.assertEq(escrow.payout(), handler.ghostPayout(), "payout");
        vm.assertEq(escrow.pendingPayout(), handler.ghostPendingPayout(), "pending payout");
        vm.assertEq(escrow.pendingPayoutAt(), handler.ghostPendingPayoutAt(), "pending payout time");
        vm.assertEq(escrow.feeRecipient(), handler.ghostFeeRecipient(), "fee recipient");
        vm.assertEq(escrow.feeBps(), handler.ghostFeeBps(), "fee");
        vm.assertEq(escrow.paused(), handler.ghostPaused(), "paused");
        vm.assertEq(handler.violations(), 0, "a call that must fail went through");
        vm.assertEq(handler.reentrantBuyer().reentries(), 0, "a re-entry went through");
    }
}
