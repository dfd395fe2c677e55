// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/**
 * @title LiandongEscrow
 * @notice Escrow for one merchant's card-key shop. A buyer pays an order that the shop quoted and
 * signed; the funds stay here until the shop records the delivery of the key (then they are
 * credited to the merchant) or the order is refunded to the buyer.
 *
 * Windows are disjoint: a delivery can be recorded only up to the order's delivery deadline, the
 * buyer can take the money back only after it, and the operator can refund a paid order at any time.
 * The platform fee is fixed when the order is paid; fees accrue to the fee recipient of the moment
 * the delivery is recorded and stay its own when the recipient changes.
 *
 * Roles and what each can do:
 * - the operator (the shop's hot key) signs quotes, records deliveries and refunds. It can move
 *   escrowed funds only to the merchant's balance (a delivery) or back to the buyer (a refund),
 *   never to itself. The owner, or the operator itself, can revoke it at once.
 * - the owner (a cold key) sets the operator, the platform fee (at most 10 %, for orders paid from
 *   then on) and its recipient, and the pause, and proposes a new payout address, which takes effect
 *   only {PAYOUT_DELAY} later; the owner or the current payout address can cancel it until then.
 *   Ownership moves in two steps and cannot be renounced. Whoever holds the owner key can make
 *   itself operator and so record deliveries of paid orders (within their delivery windows): their
 *   funds are then credited to the merchant's payout address, where only a payout change, delayed
 *   and cancellable, could redirect them.
 * - the payout address receives the merchant's balance (withdrawn by it or the owner) and can
 *   cancel a pending payout change.
 * - a buyer refunds an undelivered order after its deadline and claims refunds credited to it.
 *
 * Refunds are sent with bounded gas and never copy the receiver's return data, so no buyer can make
 * a refund batch expensive or make it revert; a refund the buyer's account refuses is credited to
 * {refundCredit}. Batches skip an order that cannot be settled ({SettlementSkipped}) and settle the
 * rest.
 *
 * Storage is one slot per order: the hash of the terms needed to settle it, whose two lowest bits
 * hold the {Status}. Settling functions take the terms as calldata and check them against it;
 * every term is also in the {OrderPaid} event, so an explorer shows the whole order.
 */
contract LiandongEscrow is Ownable2Step, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    enum Status {
        None,
        Paid,
        Delivered,
        Refunded
    }

    /// @notice An order as quoted and signed by the operator (EIP-712 type `Quote`).
    struct Quote {
        bytes32 orderId;
        uint256 productId;
        uint256 quantity;
        address token;
        uint256 amount;
        address buyer;
        uint64 expiry;
        uint64 deliveryDeadline;
    }

    /// @notice The terms of a paid order that settling it needs, as emitted in {OrderPaid}:
    /// `buyer` is the account that paid, `feeBps` the platform fee fixed at payment.
    struct Order {
        bytes32 orderId;
        address buyer;
        address token;
        uint256 amount;
        uint64 deliveryDeadline;
        uint16 feeBps;
    }

    /// @notice A delivery to record: the order and the commitment to the key delivered for it.
    struct Delivery {
        Order order;
        bytes32 commitment;
    }

    /// @notice An EIP-2612 permit signed by the buyer for this escrow.
    struct Permit {
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    bytes32 public constant QUOTE_TYPEHASH = keccak256(
        "Quote(bytes32 orderId,uint256 productId,uint256 quantity,address token,uint256 amount,address buyer,uint64 expiry,uint64 deliveryDeadline)"
    );

    /// @notice The token address that stands for the chain's native coin.
    address public constant NATIVE = address(0);

    /// @notice The highest platform fee the owner can set: 10 %.
    uint16 public constant MAX_FEE_BPS = 1_000;

    /// @notice The shortest time a quote's delivery deadline may leave after its expiry, so that an
    /// order paid at the last moment still has a window to be delivered in.
    uint64 public constant MIN_DELIVERY_WINDOW = 1 hours;

    /// @notice How long after {proposePayout} a payout change can take effect.
    uint64 public constant PAYOUT_DELAY = 2 days;

    /// @notice The gas a native refund is sent with. 30,000 covers a smart wallet's `receive()` that
    /// emits an event (a Safe proxy's delegatecall to its singleton and `SafeReceived` use about
    /// 8,000), and is far too little to loop for long or to return a large buffer.
    uint256 public constant REFUND_GAS_STIPEND = 30_000;

    /// @notice The gas an ERC-20 refund transfer is sent with. 150,000 covers USDT-style and
    /// upgradeable tokens (a proxy, a blocklist, a balance slot created for a new holder: well under
    /// 100,000) and leaves room for a transfer hook.
    uint256 public constant REFUND_TOKEN_GAS = 150_000;

    /// @notice {SettlementSkipped} reason: no order was paid under this id.
    uint8 public constant SKIP_UNKNOWN_ORDER = 1;
    /// @notice {SettlementSkipped} reason: the terms given are not the ones paid.
    uint8 public constant SKIP_TERMS_MISMATCH = 2;
    /// @notice {SettlementSkipped} reason: the order is no longer Paid (already delivered or refunded).
    uint8 public constant SKIP_NOT_PAID = 3;
    /// @notice {SettlementSkipped} reason: the delivery deadline has passed (deliveries only).
    uint8 public constant SKIP_WINDOW_CLOSED = 4;

    uint256 private constant _STATUS_MASK = 3;
    uint16 private constant _BPS = 10_000;

    // `operator`, `paused` and `feeBps` share one slot: paying and recording reads it once.
    /// @notice The shop's hot key: signs quotes, records deliveries, refunds; `address(0)` once revoked.
    address public operator;
    /// @notice While true, no new payment is accepted; refunds, deliveries and withdrawals still work.
    bool public paused;
    /// @notice Platform fee in basis points, fixed into each order when it is paid.
    uint16 public feeBps;
    /// @notice Where the merchant's credited funds are sent.
    address public payout;
    /// @notice Where platform fees of deliveries recorded from now on accrue.
    address public feeRecipient;
    /// @notice The payout address proposed by the owner, `address(0)` when none is pending.
    address public pendingPayout;
    /// @notice When {pendingPayout} can be applied (0 when none is pending).
    uint64 public pendingPayoutAt;

    mapping(bytes32 orderId => uint256 record) private _orders;

    /// @notice Funds credited to the merchant for delivered orders, by token, not yet withdrawn.
    mapping(address token => uint256 amount) public merchantBalance;
    /// @notice Platform fees taken from delivered orders, by token and by the recipient they
    /// accrued to, not yet withdrawn.
    mapping(address token => mapping(address recipient => uint256 amount)) public feeBalance;
    /// @notice Refunds whose transfer the buyer's account refused, to be claimed by the buyer.
    mapping(address token => mapping(address buyer => uint256 amount)) public refundCredit;

    /// @notice A buyer paid an order into escrow; `feeBps` is the platform fee fixed for it.
    event OrderPaid(
        bytes32 indexed orderId,
        address indexed buyer,
        uint256 productId,
        uint256 quantity,
        address token,
        uint256 amount,
        uint64 deliveryDeadline,
        uint16 feeBps
    );
    /// @notice The shop recorded delivery of an order's key; `amount - fee` went to the merchant.
    event OrderDelivered(bytes32 indexed orderId, bytes32 commitment, uint256 fee);
    /// @notice An order's funds went back to its buyer (or, if the transfer failed, to `refundCredit`).
    event OrderRefunded(bytes32 indexed orderId, address indexed buyer, address token, uint256 amount, bool credited);
    /// @notice A batch left an order as it was; `reason` is one of the `SKIP_` constants.
    event SettlementSkipped(bytes32 indexed orderId, uint8 reason);
    /// @notice A buyer claimed refunds that had been credited to them, sent to `to`.
    event RefundClaimed(address indexed buyer, address indexed token, address indexed to, uint256 amount);
    /// @notice The merchant's balance in `token` was sent to `recipient`.
    event MerchantWithdrawal(address indexed token, address indexed recipient, uint256 amount);
    /// @notice The platform fees in `token` accrued to `recipient` were sent to it.
    event FeeWithdrawal(address indexed token, address indexed recipient, uint256 amount);
    /// @notice The operator changed; `newOperator` is `address(0)` when it was revoked.
    event OperatorChanged(address indexed previousOperator, address indexed newOperator);
    /// @notice A payout change took effect.
    event PayoutChanged(address indexed previousPayout, address indexed newPayout);
    /// @notice The owner proposed a new payout address, which can be applied from `effectiveAt` on.
    event PayoutChangeProposed(address indexed newPayout, uint64 effectiveAt);
    /// @notice A pending payout change was cancelled by `by` (the owner or the payout address).
    event PayoutChangeCancelled(address indexed cancelledPayout, address indexed by);
    /// @notice The platform fee changed, for orders paid from now on, and its recipient.
    event FeeChanged(address indexed recipient, uint16 feeBps);
    event PaymentsPaused(address indexed by);
    event PaymentsUnpaused(address indexed by);

    error ZeroAddress();
    error ZeroAmount();
    error FeeTooHigh(uint16 feeBps, uint16 maxFeeBps);
    error NotOperator(address caller);
    error NotBuyerOrOperator(address caller);
    error NotOwnerOrOperator(address caller);
    error NotMerchant(address caller);
    error NotFeeRecipient(address caller);
    error PaymentsArePaused();
    error InvalidQuoteSignature();
    error QuoteExpired(uint64 expiry);
    error DeliveryWindowTooShort(uint64 expiry, uint64 deliveryDeadline);
    error WrongBuyer(address expected, address caller);
    error OrderAlreadyExists(bytes32 orderId);
    error WrongAmount(uint256 expected, uint256 received);
    error UnknownOrder(bytes32 orderId);
    error OrderTermsMismatch(bytes32 orderId);
    error WrongStatus(bytes32 orderId, Status status);
    error DeadlineNotReached(bytes32 orderId, uint64 deliveryDeadline);
    error DeliveryWindowClosed(bytes32 orderId, uint64 deliveryDeadline);
    error NothingToWithdraw(address token);
    error NativeTransferFailed(address recipient, uint256 amount);
    error InsufficientRefundGas();
    error OperatorAlreadyRevoked();
    error NoPendingPayout();
    error PayoutChangeNotReady(uint64 effectiveAt);
    error OwnershipCannotBeRenounced();

    modifier onlyOperator() {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        _;
    }

    /**
     * @param initialOwner The cold key that administers the escrow.
     * @param initialOperator The shop's hot key.
     * @param initialPayout Where the merchant's funds go.
     * @param initialFeeRecipient Where platform fees go (any non-zero address when `initialFeeBps` is 0).
     * @param initialFeeBps Platform fee in basis points, at most {MAX_FEE_BPS}.
     */
    constructor(
        address initialOwner,
        address initialOperator,
        address initialPayout,
        address initialFeeRecipient,
        uint16 initialFeeBps
    ) Ownable(initialOwner) EIP712("LiandongEscrow", "1") {
        _setOperator(initialOperator);
        _setPayout(initialPayout);
        _setFee(initialFeeRecipient, initialFeeBps);
    }

    // ---------------------------------------------------------------- buyers

    /**
     * @notice Pays a quoted order into escrow, in the native coin (`msg.value`) or in an ERC-20
     * the caller has approved. Tokens that deliver less than `amount` (fee-on-transfer) are refused.
     * The escrow's current {feeBps} becomes part of the order's terms.
     * @param quote The order as the shop quoted it.
     * @param signature The operator's EIP-712 signature of `quote`.
     */
    function pay(Quote calldata quote, bytes calldata signature) external payable {
        // A native payment makes no external call, so only token payments pay for the guard.
        if (quote.token == NATIVE) _pay(quote, signature, msg.value);
        else _payGuarded(quote, signature, msg.value);
    }

    /**
     * @notice Pays a quoted ERC-20 order with an EIP-2612 permit instead of a prior approval.
     * A permit that fails (for example because someone front-ran it from the mempool) is ignored:
     * the payment goes on if the allowance is there.
     * @param quote The order as the shop quoted it.
     * @param signature The operator's EIP-712 signature of `quote`.
     * @param permit The buyer's permit for this escrow of at least `quote.amount`.
     */
    function payWithPermit(Quote calldata quote, bytes calldata signature, Permit calldata permit)
        external
        nonReentrant
    {
        try IERC20Permit(quote.token).permit(
            msg.sender, address(this), quote.amount, permit.deadline, permit.v, permit.r, permit.s
        ) {} catch {}
        _pay(quote, signature, 0);
    }

    /**
     * @notice Refunds a paid order: the buyer may call it once the delivery deadline has passed
     * (when no delivery can be recorded any more), the operator at any time before delivery (for
     * example when out of stock). The funds are sent with bounded gas; if the buyer's account
     * refuses them they are credited to {refundCredit}.
     * @param order The order's terms, as emitted in {OrderPaid}.
     */
    function refund(Order calldata order) external nonReentrant {
        if (msg.sender != operator) {
            if (msg.sender != order.buyer) revert NotBuyerOrOperator(msg.sender);
            if (block.timestamp <= order.deliveryDeadline) {
                revert DeadlineNotReached(order.orderId, order.deliveryDeadline);
            }
        }
        (uint256 record, uint8 reason) = _paidRecord(order);
        if (reason != 0) _revertUnsettleable(order, record, reason);
        _refund(order, record);
    }

    /**
     * @notice Sends the refunds credited to the caller in `token` to `to`, with all the gas left:
     * an account that can never receive (a contract without `receive`, a blocked token holder)
     * names another. Reverts if the transfer fails.
     * @param token The token to claim, {NATIVE} for the native coin.
     * @param to The account that receives the funds.
     */
    function claimRefund(address token, address to) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        uint256 amount = refundCredit[token][msg.sender];
        if (amount == 0) revert NothingToWithdraw(token);
        refundCredit[token][msg.sender] = 0;
        emit RefundClaimed(msg.sender, token, to, amount);
        _send(token, to, amount);
    }

    // -------------------------------------------------------------- operator

    /**
     * @notice Records the delivery of one order's key, up to its delivery deadline, and credits its
     * funds, less the fee fixed at payment, to the merchant.
     * @param order The order's terms, as emitted in {OrderPaid}.
     * @param commitment The hash binding the order to the delivered key (see the shop's vault).
     */
    function recordDelivery(Order calldata order, bytes32 commitment) external onlyOperator {
        (uint256 record, uint8 reason) = _deliverableRecord(order);
        if (reason != 0) _revertUnsettleable(order, record, reason);
        uint256 fee = _deliver(order, record, commitment);
        _credit(order.token, order.amount - fee, fee);
    }

    /**
     * @notice Records many deliveries at once. An order that cannot be delivered (unknown, other
     * terms, no longer Paid, past its deadline) is skipped with {SettlementSkipped}; the others are.
     * Consecutive orders in the same token are credited with one write, so group them by token.
     * @param deliveries The orders and their commitments.
     */
    function recordDeliveries(Delivery[] calldata deliveries) external onlyOperator {
        address runToken = NATIVE;
        uint256 runAmount = 0;
        uint256 runFee = 0;
        for (uint256 i; i < deliveries.length; ++i) {
            Order calldata order = deliveries[i].order;
            (uint256 record, uint8 reason) = _deliverableRecord(order);
            if (reason != 0) {
                emit SettlementSkipped(order.orderId, reason);
                continue;
            }
            uint256 fee = _deliver(order, record, deliveries[i].commitment);
            address token = order.token;
            if (token != runToken) {
                _credit(runToken, runAmount - runFee, runFee);
                (runToken, runAmount, runFee) = (token, 0, 0);
            }
            runAmount += order.amount;
            runFee += fee;
        }
        _credit(runToken, runAmount - runFee, runFee);
    }

    /**
     * @notice Refunds many undelivered orders to their buyers. An order that cannot be refunded
     * (unknown, other terms, no longer Paid) is skipped with {SettlementSkipped}; the others are.
     * A buyer whose account refuses the funds is credited instead, so no order can block the batch.
     * @param orders The orders' terms, as emitted in {OrderPaid}.
     */
    function refundBatch(Order[] calldata orders) external onlyOperator nonReentrant {
        for (uint256 i; i < orders.length; ++i) {
            Order calldata order = orders[i];
            (uint256 record, uint8 reason) = _paidRecord(order);
            if (reason != 0) {
                emit SettlementSkipped(order.orderId, reason);
                continue;
            }
            _refund(order, record);
        }
    }

    /**
     * @notice Revokes the operator at once: no quote verifies and no settlement can be recorded
     * until the owner sets a new one. Callable by the owner or by the operator itself.
     */
    function revokeOperator() external {
        address current = operator;
        if (msg.sender != current && msg.sender != owner()) revert NotOwnerOrOperator(msg.sender);
        if (current == address(0)) revert OperatorAlreadyRevoked();
        operator = address(0);
        emit OperatorChanged(current, address(0));
    }

    // -------------------------------------------------------------- merchant

    /**
     * @notice Sends the merchant's whole balance in `token` to the payout address.
     * Callable by the owner or the payout address; works while paused.
     * @param token The token to withdraw, {NATIVE} for the native coin.
     */
    function withdraw(address token) external nonReentrant {
        address recipient = payout;
        if (msg.sender != owner() && msg.sender != recipient) revert NotMerchant(msg.sender);
        uint256 amount = merchantBalance[token];
        if (amount == 0) revert NothingToWithdraw(token);
        merchantBalance[token] = 0;
        emit MerchantWithdrawal(token, recipient, amount);
        _send(token, recipient, amount);
    }

    /**
     * @notice Sends the platform fees in `token` accrued to `recipient` to it, whoever the fee
     * recipient is now. Callable by the owner or `recipient`.
     * @param token The token to withdraw, {NATIVE} for the native coin.
     * @param recipient The account the fees accrued to.
     */
    function withdrawFees(address token, address recipient) external nonReentrant {
        if (msg.sender != owner() && msg.sender != recipient) revert NotFeeRecipient(msg.sender);
        uint256 amount = feeBalance[token][recipient];
        if (amount == 0) revert NothingToWithdraw(token);
        feeBalance[token][recipient] = 0;
        emit FeeWithdrawal(token, recipient, amount);
        _send(token, recipient, amount);
    }

    /**
     * @notice Cancels the pending payout change. Callable by the owner or the current payout
     * address, so a merchant can keep a stolen owner key from redirecting its revenue.
     */
    function cancelPayout() external {
        if (msg.sender != owner() && msg.sender != payout) revert NotMerchant(msg.sender);
        address cancelled = pendingPayout;
        if (cancelled == address(0)) revert NoPendingPayout();
        (pendingPayout, pendingPayoutAt) = (address(0), 0);
        emit PayoutChangeCancelled(cancelled, msg.sender);
    }

    /// @notice Makes the pending payout change take effect, once its delay has passed. Callable by anyone.
    function applyPayout() external {
        (address next, uint64 effectiveAt) = (pendingPayout, pendingPayoutAt);
        if (next == address(0)) revert NoPendingPayout();
        if (block.timestamp < effectiveAt) revert PayoutChangeNotReady(effectiveAt);
        (pendingPayout, pendingPayoutAt) = (address(0), 0);
        _setPayout(next);
    }

    // ----------------------------------------------------------------- owner

    /// @notice Replaces the operator key, for example after it leaked or was revoked.
    /// @param newOperator The new hot key (not zero: use {revokeOperator}).
    function setOperator(address newOperator) external onlyOwner {
        _setOperator(newOperator);
    }

    /**
     * @notice Proposes a new payout address, which {applyPayout} makes effective {PAYOUT_DELAY}
     * from now, unless the owner or the payout address cancels it first. Replaces any pending proposal.
     * @param newPayout The proposed payout address.
     */
    function proposePayout(address newPayout) external onlyOwner {
        if (newPayout == address(0)) revert ZeroAddress();
        uint64 effectiveAt = uint64(block.timestamp) + PAYOUT_DELAY;
        (pendingPayout, pendingPayoutAt) = (newPayout, effectiveAt);
        emit PayoutChangeProposed(newPayout, effectiveAt);
    }

    /**
     * @notice Sets the platform fee for orders paid from now on (paid orders keep theirs) and the
     * recipient the fees of deliveries recorded from now on accrue to (accrued fees stay with theirs).
     * @param newFeeRecipient Where fees accrue (non-zero).
     * @param newFeeBps The fee in basis points, at most {MAX_FEE_BPS}.
     */
    function setFee(address newFeeRecipient, uint16 newFeeBps) external onlyOwner {
        _setFee(newFeeRecipient, newFeeBps);
    }

    /// @notice Stops new payments. Refunds, deliveries and withdrawals go on.
    function pause() external onlyOwner {
        paused = true;
        emit PaymentsPaused(msg.sender);
    }

    /// @notice Accepts payments again.
    function unpause() external onlyOwner {
        paused = false;
        emit PaymentsUnpaused(msg.sender);
    }

    /// @notice Always reverts: without an owner the operator could never be replaced again.
    function renounceOwnership() public pure override {
        revert OwnershipCannotBeRenounced();
    }

    // ----------------------------------------------------------------- views

    /**
     * @notice The state of an order and the hash of its settlement terms.
     * @param orderId The order's id.
     * @return status Where the order is in its life.
     * @return termsHash {orderTermsHash} of its terms with the two lowest bits cleared (0 if unknown).
     */
    function orderStatus(bytes32 orderId) external view returns (Status status, bytes32 termsHash) {
        uint256 record = _orders[orderId];
        return (Status(record & _STATUS_MASK), bytes32(record & ~_STATUS_MASK));
    }

    /// @notice The EIP-712 digest the operator signs for `quote`.
    function quoteDigest(Quote calldata quote) public view returns (bytes32) {
        // keccak256(abi.encode(QUOTE_TYPEHASH, quote)), the static struct copied as it is encoded in
        // calldata: a field with dirty upper bits makes another digest, which no signature matches.
        bytes32 typeHash = QUOTE_TYPEHASH;
        bytes32 structHash;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typeHash)
            calldatacopy(add(ptr, 0x20), quote, 0x100)
            structHash := keccak256(ptr, 0x120)
        }
        return _hashTypedDataV4(structHash);
    }

    /// @notice The hash of an order's settlement terms as kept in storage (two lowest bits cleared):
    /// `keccak256(abi.encode(buyer, token, amount, deliveryDeadline, feeBps))`.
    function orderTermsHash(Order calldata order) public pure returns (bytes32) {
        return bytes32(_termsHash(order.buyer, order.token, order.amount, order.deliveryDeadline, order.feeBps));
    }

    // -------------------------------------------------------------- internal

    function _payGuarded(Quote calldata quote, bytes calldata signature, uint256 nativeValue)
        private
        nonReentrant
    {
        _pay(quote, signature, nativeValue);
    }

    /// @dev `nativeValue` is `msg.value` when the entry point is payable, else 0.
    function _pay(Quote calldata quote, bytes calldata signature, uint256 nativeValue) private {
        (address currentOperator, bool isPaused, uint16 currentFeeBps) = (operator, paused, feeBps);
        if (isPaused) revert PaymentsArePaused();
        (uint64 expiry, uint64 deliveryDeadline) = (quote.expiry, quote.deliveryDeadline);
        if (block.timestamp > expiry) revert QuoteExpired(expiry);
        if (quote.amount == 0) revert ZeroAmount();
        if (uint256(deliveryDeadline) < uint256(expiry) + MIN_DELIVERY_WINDOW) {
            revert DeliveryWindowTooShort(expiry, deliveryDeadline);
        }
        if (quote.buyer != address(0) && quote.buyer != msg.sender) revert WrongBuyer(quote.buyer, msg.sender);
        // The third value only details a malformed signature, which is refused as invalid all the same.
        // A revoked operator is address(0), which no signature recovers to.
        // slither-disable-next-line unused-return
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(quoteDigest(quote), signature);
        if (err != ECDSA.RecoverError.NoError || signer != currentOperator) revert InvalidQuoteSignature();
        if (_orders[quote.orderId] != 0) revert OrderAlreadyExists(quote.orderId);

        _orders[quote.orderId] =
            _termsHash(msg.sender, quote.token, quote.amount, deliveryDeadline, currentFeeBps) | uint256(Status.Paid);
        _emitOrderPaid(quote, deliveryDeadline, currentFeeBps);

        if (quote.token == NATIVE) {
            if (nativeValue != quote.amount) revert WrongAmount(quote.amount, nativeValue);
        } else {
            if (nativeValue != 0) revert WrongAmount(0, nativeValue);
            _pullExactly(IERC20(quote.token), quote.amount);
        }
    }

    /// @dev Emits {OrderPaid} as `emit` would, with the quote's productId, quantity, token and amount
    /// copied from calldata in one go (they are consecutive there; `token` was checked clean by `pay`).
    function _emitOrderPaid(Quote calldata quote, uint64 deliveryDeadline, uint16 orderFeeBps) private {
        bytes32 topic = OrderPaid.selector;
        bytes32 orderId = quote.orderId;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, add(quote, 0x20), 0x80)
            mstore(add(ptr, 0x80), and(deliveryDeadline, 0xffffffffffffffff))
            mstore(add(ptr, 0xa0), and(orderFeeBps, 0xffff))
            log3(ptr, 0xc0, topic, orderId, caller())
        }
    }

    /// @dev Measures what arrived rather than trusting the token, so a fee-on-transfer token can
    /// never record an order as paid with less than its amount.
    function _pullExactly(IERC20 token, uint256 amount) private {
        uint256 balanceBefore = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - balanceBefore;
        if (received != amount) revert WrongAmount(amount, received);
    }

    /// @dev The stored record of `order`, and 0 if it is Paid under these terms, else why it is not
    /// (a `SKIP_` reason).
    function _paidRecord(Order calldata order) private view returns (uint256 record, uint8 reason) {
        record = _orders[order.orderId];
        if (record == 0) return (record, SKIP_UNKNOWN_ORDER);
        if (record & ~_STATUS_MASK != _calldataTermsHash(order)) return (record, SKIP_TERMS_MISMATCH);
        if (record & _STATUS_MASK != uint256(Status.Paid)) return (record, SKIP_NOT_PAID);
    }

    /// @dev Like {_paidRecord}, and the delivery window must still be open.
    function _deliverableRecord(Order calldata order) private view returns (uint256 record, uint8 reason) {
        (record, reason) = _paidRecord(order);
        if (reason == 0 && block.timestamp > order.deliveryDeadline) reason = SKIP_WINDOW_CLOSED;
    }

    /// @dev The single settling functions revert where the batches skip.
    function _revertUnsettleable(Order calldata order, uint256 record, uint8 reason) private pure {
        if (reason == SKIP_UNKNOWN_ORDER) revert UnknownOrder(order.orderId);
        if (reason == SKIP_TERMS_MISMATCH) revert OrderTermsMismatch(order.orderId);
        if (reason == SKIP_NOT_PAID) revert WrongStatus(order.orderId, Status(record & _STATUS_MASK));
        revert DeliveryWindowClosed(order.orderId, order.deliveryDeadline);
    }

    /// @dev Moves a Paid order (its `paidRecord`) to Delivered; returns the fee fixed at payment.
    function _deliver(Order calldata order, uint256 paidRecord, bytes32 commitment) private returns (uint256 fee) {
        _orders[order.orderId] = paidRecord ^ uint256(Status.Paid) ^ uint256(Status.Delivered);
        (uint256 amount, uint256 orderFeeBps) = (order.amount, order.feeBps);
        // Exactly floor(amount * feeBps / 10,000) (amount = q * 10,000 + r), computed so that it
        // cannot overflow whatever the amount: a batch must never revert for one order.
        unchecked {
            // slither-disable-next-line divide-before-multiply
            fee = amount / _BPS * orderFeeBps + amount % _BPS * orderFeeBps / _BPS;
        }
        emit OrderDelivered(order.orderId, commitment, fee);
    }

    /// @dev Moves a Paid order (its `paidRecord`) to Refunded before the transfer
    /// (checks-effects-interactions); the credit and the event after it depend on its outcome, and
    /// every caller is `nonReentrant`.
    function _refund(Order calldata order, uint256 paidRecord) private {
        _orders[order.orderId] = paidRecord ^ uint256(Status.Paid) ^ uint256(Status.Refunded);
        (address token, address buyer, uint256 amount) = (order.token, order.buyer, order.amount);
        // slither-disable-next-line reentrancy-benign,reentrancy-events
        bool sent = _trySend(token, buyer, amount);
        if (!sent) refundCredit[token][buyer] += amount;
        emit OrderRefunded(order.orderId, buyer, token, amount, !sent);
    }

    function _credit(address token, uint256 merchantAmount, uint256 fee) private {
        if (merchantAmount != 0) merchantBalance[token] += merchantAmount;
        if (fee != 0) feeBalance[token][feeRecipient] += fee;
    }

    /// @dev Sends with all the gas left and reverts on failure: for withdrawals and claims, whose
    /// receiver (a payout Safe, say) may need more than a refund's bounded gas.
    function _send(address token, address to, uint256 amount) private {
        if (token == NATIVE) {
            bool ok;
            assembly ("memory-safe") {
                ok := call(gas(), to, amount, 0, 0, 0, 0)
            }
            if (!ok) revert NativeTransferFailed(to, amount);
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }

    /**
     * @dev Like {_send} but with bounded gas ({REFUND_GAS_STIPEND}, {REFUND_TOKEN_GAS}), at most
     * 32 bytes of return data read, and failure reported instead of reverting, so that one buyer
     * whose account refuses funds, burns gas or returns a huge buffer cannot block or bloat other
     * refunds. A token transfer succeeds as in OpenZeppelin's `trySafeTransfer`: `true` returned, or
     * nothing returned by a contract. A failed send reverts the whole transaction if it may have
     * failed for want of gas (less than 1/64 of the bound left, EIP-150), so that a gas estimate or
     * a low gas limit cannot starve a buyer's call into a credit.
     */
    function _trySend(address token, address to, uint256 amount) private returns (bool ok) {
        uint256 gasBound;
        if (token == NATIVE) {
            gasBound = REFUND_GAS_STIPEND;
            assembly ("memory-safe") {
                ok := call(gasBound, to, amount, 0, 0, 0, 0)
            }
        } else {
            gasBound = REFUND_TOKEN_GAS;
            bytes4 selector = IERC20.transfer.selector;
            assembly ("memory-safe") {
                let fmp := mload(0x40)
                mstore(0x00, selector)
                mstore(0x04, and(to, shr(96, not(0))))
                mstore(0x24, amount)
                ok := call(gasBound, token, 0, 0x00, 0x44, 0x00, 0x20)
                if iszero(and(ok, eq(mload(0x00), 1))) {
                    ok := and(ok, and(iszero(returndatasize()), gt(extcodesize(token), 0)))
                }
                mstore(0x40, fmp)
            }
        }
        if (!ok && gasleft() < gasBound / 63) revert InsufficientRefundGas();
    }

    /// @dev {_termsHash} of an order's terms straight from calldata, where the five terms follow the
    /// order id as their ABI encoding. Terms with dirty upper bits hash to something else than the
    /// stored record and are refused as a mismatch.
    function _calldataTermsHash(Order calldata order) private pure returns (uint256 termsHash) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, add(order, 0x20), 0xa0)
            termsHash := and(keccak256(ptr, 0xa0), not(_STATUS_MASK))
        }
    }

    function _termsHash(address buyer, address token, uint256 amount, uint64 deliveryDeadline, uint16 orderFeeBps)
        private
        pure
        returns (uint256 termsHash)
    {
        // keccak256(abi.encode(buyer, token, amount, deliveryDeadline, orderFeeBps)), written in
        // scratch memory past the free memory pointer (not allocated: nothing else uses it meanwhile).
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, and(buyer, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(ptr, 0x20), and(token, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(ptr, 0x40), amount)
            mstore(add(ptr, 0x60), and(deliveryDeadline, 0xffffffffffffffff))
            mstore(add(ptr, 0x80), and(orderFeeBps, 0xffff))
            termsHash := and(keccak256(ptr, 0xa0), not(_STATUS_MASK))
        }
    }

    function _setOperator(address newOperator) private {
        if (newOperator == address(0)) revert ZeroAddress();
        emit OperatorChanged(operator, newOperator);
        operator = newOperator;
    }

    function _setPayout(address newPayout) private {
        if (newPayout == address(0)) revert ZeroAddress();
        emit PayoutChanged(payout, newPayout);
        payout = newPayout;
    }

    function _setFee(address newFeeRecipient, uint16 newFeeBps) private {
        if (newFeeRecipient == address(0)) revert ZeroAddress();
        if (newFeeBps > MAX_FEE_BPS) revert FeeTooHigh(newFeeBps, MAX_FEE_BPS);
        feeRecipient = newFeeRecipient;
        feeBps = newFeeBps;
        emit FeeChanged(newFeeRecipient, newFeeBps);
    }
}
