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
 * Roles:
 * - the owner (a cold key) sets the operator, the payout address, the platform fee and the pause;
 * - the operator (the shop's hot key) signs quotes, records deliveries and refunds orders.
 *
 * Escrowed funds can only ever go back to the buyer, or to the merchant's payout address after a
 * recorded delivery: a stolen operator key cannot send funds to itself.
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

    /// @notice The terms of a paid order that settling it needs; `buyer` is the account that paid.
    struct Order {
        bytes32 orderId;
        address buyer;
        address token;
        uint256 amount;
        uint64 deliveryDeadline;
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

    uint256 private constant _STATUS_MASK = 3;
    uint16 private constant _BPS = 10_000;

    // `operator`, `paused` and `feeBps` share one slot: paying and recording reads it once.
    /// @notice The shop's hot key: signs quotes, records deliveries, refunds.
    address public operator;
    /// @notice While true, no new payment is accepted; refunds and withdrawals still work.
    bool public paused;
    /// @notice Platform fee in basis points, taken from each order when its delivery is recorded.
    uint16 public feeBps;
    /// @notice Where the merchant's credited funds are sent.
    address public payout;
    /// @notice Where platform fees are sent.
    address public feeRecipient;

    mapping(bytes32 orderId => uint256 record) private _orders;

    /// @notice Funds credited to the merchant for delivered orders, by token, not yet withdrawn.
    mapping(address token => uint256 amount) public merchantBalance;
    /// @notice Platform fees taken from delivered orders, by token, not yet withdrawn.
    mapping(address token => uint256 amount) public feeBalance;
    /// @notice Refunds whose transfer the buyer's account refused, to be claimed by the buyer.
    mapping(address token => mapping(address buyer => uint256 amount)) public refundCredit;

    /// @notice A buyer paid an order into escrow.
    event OrderPaid(
        bytes32 indexed orderId,
        address indexed buyer,
        uint256 productId,
        uint256 quantity,
        address token,
        uint256 amount,
        uint64 deliveryDeadline
    );
    /// @notice The shop recorded delivery of an order's key; `amount - fee` went to the merchant.
    event OrderDelivered(bytes32 indexed orderId, bytes32 commitment, uint256 fee);
    /// @notice An order's funds went back to its buyer (or, if the transfer failed, to `refundCredit`).
    event OrderRefunded(bytes32 indexed orderId, address indexed buyer, address token, uint256 amount, bool credited);
    /// @notice A buyer claimed refunds that had been credited to them.
    event RefundClaimed(address indexed buyer, address indexed token, uint256 amount);
    /// @notice The merchant's balance in `token` was sent to `recipient`.
    event MerchantWithdrawal(address indexed token, address indexed recipient, uint256 amount);
    /// @notice The platform fees in `token` were sent to `recipient`.
    event FeeWithdrawal(address indexed token, address indexed recipient, uint256 amount);
    event OperatorChanged(address indexed previousOperator, address indexed newOperator);
    event PayoutChanged(address indexed previousPayout, address indexed newPayout);
    event FeeChanged(address indexed recipient, uint16 feeBps);
    event PaymentsPaused(address indexed by);
    event PaymentsUnpaused(address indexed by);

    error ZeroAddress();
    error FeeTooHigh(uint16 feeBps, uint16 maxFeeBps);
    error NotOperator(address caller);
    error NotBuyerOrOperator(address caller);
    error NotMerchant(address caller);
    error NotFeeRecipient(address caller);
    error PaymentsArePaused();
    error InvalidQuoteSignature();
    error QuoteExpired(uint64 expiry);
    error WrongBuyer(address expected, address caller);
    error OrderAlreadyExists(bytes32 orderId);
    error WrongAmount(uint256 expected, uint256 received);
    error UnknownOrder(bytes32 orderId);
    error OrderTermsMismatch(bytes32 orderId);
    error WrongStatus(bytes32 orderId, Status status);
    error DeadlineNotReached(bytes32 orderId, uint64 deliveryDeadline);
    error NothingToWithdraw(address token);
    error NativeTransferFailed(address recipient, uint256 amount);

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
     * @notice Takes back the funds of an order that was not delivered by its deadline.
     * The operator may also call it at any time before delivery (for example when out of stock).
     * @param order The order's terms, as emitted in {OrderPaid}.
     */
    function refund(Order calldata order) external nonReentrant {
        if (msg.sender != operator) {
            if (msg.sender != order.buyer) revert NotBuyerOrOperator(msg.sender);
            if (block.timestamp <= order.deliveryDeadline) {
                revert DeadlineNotReached(order.orderId, order.deliveryDeadline);
            }
        }
        _refund(order);
    }

    /**
     * @notice Sends the caller the refunds credited to them after their account refused a transfer.
     * @param token The token to claim, {NATIVE} for the native coin.
     */
    function claimRefund(address token) external nonReentrant {
        uint256 amount = refundCredit[token][msg.sender];
        if (amount == 0) revert NothingToWithdraw(token);
        refundCredit[token][msg.sender] = 0;
        emit RefundClaimed(msg.sender, token, amount);
        _send(token, msg.sender, amount);
    }

    // -------------------------------------------------------------- operator

    /**
     * @notice Records the delivery of one order's key and credits its funds to the merchant.
     * @param order The order's terms, as emitted in {OrderPaid}.
     * @param commitment The hash binding the order to the delivered key (see the shop's vault).
     */
    function recordDelivery(Order calldata order, bytes32 commitment) external onlyOperator {
        uint256 fee = _settleDelivery(order, commitment, feeBps);
        _credit(order.token, order.amount - fee, fee);
    }

    /**
     * @notice Records many deliveries at once. Consecutive orders in the same token are credited
     * with one write, so group them by token.
     * @param deliveries The orders and their commitments.
     */
    function recordDeliveries(Delivery[] calldata deliveries) external onlyOperator {
        uint16 currentFeeBps = feeBps;
        address runToken = NATIVE;
        uint256 runAmount = 0;
        uint256 runFee = 0;
        for (uint256 i; i < deliveries.length; ++i) {
            Order calldata order = deliveries[i].order;
            uint256 fee = _settleDelivery(order, deliveries[i].commitment, currentFeeBps);
            if (order.token != runToken) {
                _credit(runToken, runAmount - runFee, runFee);
                (runToken, runAmount, runFee) = (order.token, 0, 0);
            }
            runAmount += order.amount;
            runFee += fee;
        }
        _credit(runToken, runAmount - runFee, runFee);
    }

    /**
     * @notice Refunds many undelivered orders to their buyers.
     * @param orders The orders' terms, as emitted in {OrderPaid}.
     */
    function refundBatch(Order[] calldata orders) external onlyOperator nonReentrant {
        for (uint256 i; i < orders.length; ++i) {
            // A buyer whose account refuses the funds is credited instead, so the loop cannot be blocked.
            _refund(orders[i]);
        }
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
     * @notice Sends the platform fees collected in `token` to the fee recipient.
     * Callable by the owner or the fee recipient.
     * @param token The token to withdraw, {NATIVE} for the native coin.
     */
    function withdrawFees(address token) external nonReentrant {
        address recipient = feeRecipient;
        if (msg.sender != owner() && msg.sender != recipient) revert NotFeeRecipient(msg.sender);
        uint256 amount = feeBalance[token];
        if (amount == 0) revert NothingToWithdraw(token);
        feeBalance[token] = 0;
        emit FeeWithdrawal(token, recipient, amount);
        _send(token, recipient, amount);
    }

    // ----------------------------------------------------------------- owner

    /// @notice Replaces the operator key, for example after it leaked.
    function setOperator(address newOperator) external onlyOwner {
        _setOperator(newOperator);
    }

    /// @notice Changes where the merchant's funds are sent.
    function setPayout(address newPayout) external onlyOwner {
        _setPayout(newPayout);
    }

    /// @notice Sets the platform fee, applied to deliveries recorded from now on.
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
        return _hashTypedDataV4(keccak256(abi.encode(QUOTE_TYPEHASH, quote)));
    }

    /// @notice The hash of an order's settlement terms as kept in storage (two lowest bits cleared).
    function orderTermsHash(Order calldata order) public pure returns (bytes32) {
        return bytes32(_termsHash(order.buyer, order.token, order.amount, order.deliveryDeadline));
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
        (address currentOperator, bool isPaused) = (operator, paused);
        if (isPaused) revert PaymentsArePaused();
        if (block.timestamp > quote.expiry) revert QuoteExpired(quote.expiry);
        if (quote.buyer != address(0) && quote.buyer != msg.sender) revert WrongBuyer(quote.buyer, msg.sender);
        // The third value only details a malformed signature, which is refused as invalid all the same.
        // slither-disable-next-line unused-return
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(quoteDigest(quote), signature);
        if (err != ECDSA.RecoverError.NoError || signer != currentOperator) revert InvalidQuoteSignature();
        if (_orders[quote.orderId] != 0) revert OrderAlreadyExists(quote.orderId);

        _orders[quote.orderId] =
            _termsHash(msg.sender, quote.token, quote.amount, quote.deliveryDeadline) | uint256(Status.Paid);
        emit OrderPaid(
            quote.orderId, msg.sender, quote.productId, quote.quantity, quote.token, quote.amount, quote.deliveryDeadline
        );

        if (quote.token == NATIVE) {
            if (nativeValue != quote.amount) revert WrongAmount(quote.amount, nativeValue);
        } else {
            if (nativeValue != 0) revert WrongAmount(0, nativeValue);
            _pullExactly(IERC20(quote.token), quote.amount);
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

    /// @dev Moves a paid order to Delivered and returns the platform fee taken from it.
    function _settleDelivery(Order calldata order, bytes32 commitment, uint16 currentFeeBps)
        private
        returns (uint256 fee)
    {
        uint256 paidRecord = _requirePaid(order);
        _orders[order.orderId] = paidRecord ^ uint256(Status.Paid) ^ uint256(Status.Delivered);
        fee = order.amount * currentFeeBps / _BPS;
        emit OrderDelivered(order.orderId, commitment, fee);
    }

    /// @dev The order is Refunded before the transfer (checks-effects-interactions); the credit and
    /// the event after it depend on its outcome, and every caller is `nonReentrant`.
    function _refund(Order calldata order) private {
        uint256 paidRecord = _requirePaid(order);
        _orders[order.orderId] = paidRecord ^ uint256(Status.Paid) ^ uint256(Status.Refunded);
        // slither-disable-next-line reentrancy-benign,reentrancy-events
        bool delivered = _trySend(order.token, order.buyer, order.amount);
        if (!delivered) refundCredit[order.token][order.buyer] += order.amount;
        emit OrderRefunded(order.orderId, order.buyer, order.token, order.amount, !delivered);
    }

    /// @dev Checks `order` against its stored record and that it is Paid; returns the record.
    function _requirePaid(Order calldata order) private view returns (uint256 record) {
        record = _orders[order.orderId];
        if (record == 0) revert UnknownOrder(order.orderId);
        uint256 expected = _termsHash(order.buyer, order.token, order.amount, order.deliveryDeadline);
        if (record & ~_STATUS_MASK != expected) revert OrderTermsMismatch(order.orderId);
        Status status = Status(record & _STATUS_MASK);
        if (status != Status.Paid) revert WrongStatus(order.orderId, status);
    }

    function _credit(address token, uint256 merchantAmount, uint256 fee) private {
        if (merchantAmount != 0) merchantBalance[token] += merchantAmount;
        if (fee != 0) feeBalance[token] += fee;
    }

    function _send(address token, address to, uint256 amount) private {
        if (token == NATIVE) {
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert NativeTransferFailed(to, amount);
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }

    /// @dev Like {_send} but reports failure instead of reverting, so one buyer whose account
    /// refuses funds (a reverting contract, a blacklisted address) cannot block other refunds.
    function _trySend(address token, address to, uint256 amount) private returns (bool) {
        if (token == NATIVE) {
            (bool ok,) = to.call{value: amount}("");
            return ok;
        }
        return IERC20(token).trySafeTransfer(to, amount);
    }

    function _termsHash(address buyer, address token, uint256 amount, uint64 deliveryDeadline)
        private
        pure
        returns (uint256)
    {
        return uint256(keccak256(abi.encode(buyer, token, amount, deliveryDeadline))) & ~_STATUS_MASK;
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
