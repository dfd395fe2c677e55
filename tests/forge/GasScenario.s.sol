// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {LiandongEscrow} from "../../contracts/LiandongEscrow.sol";
import {MintableToken, NoReturnToken} from "../../contracts/TestTokens.sol";
import {ReturnBomb} from "./Actors.sol";
import {EscrowHelpers} from "./TestBase.sol";

/**
 * @notice The transactions whose gas bench/gas_report.py reports, run as a forge script broadcast
 * against a local anvil, so that the figures are real receipts' `gasUsed` (intrinsic and calldata
 * cost, cold access, refunds) rather than in-EVM `gasleft()` deltas.
 *
 * Every measured transaction runs in the steady state a live shop is in most of the time: the
 * escrow already holds the token, the merchant and fee balances are already non-zero, the buyer
 * keeps a token balance and a finite allowance after paying, and a permit buyer has used permits
 * before. Warm-up transactions bring the chain there first.
 *
 * `run()` returns one record `label;orders|` per broadcast transaction, in sending order: the
 * measured step's label (empty for set-up transactions) and how many orders the transaction
 * settles (1 unless it is a batch). The report zips these records with the receipts.
 */
contract GasScenario is EscrowHelpers {
    // anvil's well-known development keys (accounts 0 to 4); never used outside a local chain.
    uint256 private constant OWNER_KEY = 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80;
    uint256 private constant OPERATOR_KEY = 0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d;
    uint256 private constant BUYER_KEY = 0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a;
    uint256 private constant PERMIT_BUYER_KEY = 0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6;
    uint256 private constant PAYOUT_KEY = 0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a;

    bytes32 private constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    /// @notice How many orders the batch steps settle in one transaction.
    uint256 public constant BATCH_SIZE = 50;
    uint16 private constant FEE_BPS = 250;
    uint256 private constant NATIVE_PRICE = 0.01 ether;
    uint256 private constant TOKEN_PRICE = 25e18;
    uint256 private constant USDT_PRICE = 25e6;
    /// @dev Allowances stay finite, as most wallets set them, so each payment rewrites the slot.
    uint256 private constant ALLOWANCE = 1e40;

    LiandongEscrow private escrow;
    MintableToken private token;
    NoReturnToken private usdt;
    uint256 private _orderCount;
    /// @dev The native order paid in the "pay (native)" step, delivered later to fund a withdrawal.
    LiandongEscrow.Order private _nativeOrder;
    /// @dev One record per broadcast transaction; see the contract's notice.
    string private _labels;

    function run() external returns (string memory labels) {
        _setUp();
        _measurePayments();
        _measureDeliveries();
        _measureRefunds();
        _measureWithdrawals();
        return _labels;
    }

    // ------------------------------------------------------------------ steps

    function _setUp() private {
        address operator = vm.addr(OPERATOR_KEY);
        address buyer = vm.addr(BUYER_KEY);
        address permitBuyer = vm.addr(PERMIT_BUYER_KEY);

        vm.startBroadcast(OWNER_KEY);
        escrow = new LiandongEscrow(vm.addr(OWNER_KEY), operator, vm.addr(PAYOUT_KEY), address(0xFEE), FEE_BPS);
        token = new MintableToken("Test Token", "TT", 18);
        usdt = new NoReturnToken();
        token.mint(buyer, 1e30);
        token.mint(permitBuyer, 1e30);
        usdt.mint(buyer, 1e30);
        vm.stopBroadcast();
        _setUpSteps(6);

        vm.startBroadcast(BUYER_KEY);
        token.approve(address(escrow), ALLOWANCE);
        usdt.approve(address(escrow), ALLOWANCE);
        vm.stopBroadcast();
        _setUpSteps(2);
    }

    function _measurePayments() private {
        _nativeOrder = _pay(BUYER_KEY, address(0), NATIVE_PRICE, "pay (native)");
        _pay(BUYER_KEY, address(token), TOKEN_PRICE, "pay (ERC-20, first payment in this token)");
        _pay(BUYER_KEY, address(token), TOKEN_PRICE, "pay (ERC-20, steady state)");
        _pay(BUYER_KEY, address(usdt), USDT_PRICE, "");
        _pay(BUYER_KEY, address(usdt), USDT_PRICE, "pay (NoReturnToken, steady state)");
        _payWithPermit("");
        _payWithPermit("payWithPermit (ERC-20, steady state)");
    }

    function _measureDeliveries() private {
        _deliver(_pay(BUYER_KEY, address(token), TOKEN_PRICE, ""), "");
        _deliver(_pay(BUYER_KEY, address(token), TOKEN_PRICE, ""), "recordDelivery (single)");

        LiandongEscrow.Delivery[] memory deliveries = new LiandongEscrow.Delivery[](BATCH_SIZE);
        for (uint256 i; i < BATCH_SIZE; ++i) {
            deliveries[i].order = _pay(BUYER_KEY, address(token), TOKEN_PRICE, "");
            deliveries[i].commitment = keccak256(abi.encode("key", deliveries[i].order.orderId));
        }
        vm.startBroadcast(OPERATOR_KEY);
        escrow.recordDeliveries(deliveries);
        vm.stopBroadcast();
        _step("recordDeliveries (batch)", BATCH_SIZE);
    }

    function _measureRefunds() private {
        LiandongEscrow.Order memory order = _pay(BUYER_KEY, address(token), TOKEN_PRICE, "");
        vm.startBroadcast(OPERATOR_KEY);
        escrow.refund(order);
        vm.stopBroadcast();
        _step("refund (single, ERC-20)");

        LiandongEscrow.Order[] memory orders = new LiandongEscrow.Order[](BATCH_SIZE);
        for (uint256 i; i < BATCH_SIZE; ++i) {
            orders[i] = _pay(BUYER_KEY, address(token), TOKEN_PRICE, "");
        }
        vm.startBroadcast(OPERATOR_KEY);
        escrow.refundBatch(orders);
        vm.stopBroadcast();
        _step("refundBatch (batch, ERC-20)", BATCH_SIZE);

        for (uint256 i; i < BATCH_SIZE; ++i) {
            orders[i] = _pay(BUYER_KEY, address(0), NATIVE_PRICE, "");
        }
        vm.startBroadcast(OPERATOR_KEY);
        escrow.refundBatch(orders);
        vm.stopBroadcast();
        _step("refundBatch (batch, native)", BATCH_SIZE);

        // The same, but one of the 50 buyers is a contract whose receive() reverts with 300 KB:
        // its refund is credited, and the bounded send keeps it from costing more than its stipend.
        vm.startBroadcast(OWNER_KEY);
        ReturnBomb bomb = new ReturnBomb();
        vm.stopBroadcast();
        _step("");
        orders[0] = _payFromBomb(bomb);
        for (uint256 i = 1; i < BATCH_SIZE; ++i) {
            orders[i] = _pay(BUYER_KEY, address(0), NATIVE_PRICE, "");
        }
        vm.startBroadcast(OPERATOR_KEY);
        escrow.refundBatch(orders);
        vm.stopBroadcast();
        _step("refundBatch (native, one return-bomb buyer)", BATCH_SIZE);
    }

    /// @dev The payout account already holds the native coin; it gets its first tokens from
    /// a warm-up withdrawal, so that the measured one does not pay for creating its balance.
    function _measureWithdrawals() private {
        _deliver(_nativeOrder, "");
        _withdraw(address(0), "withdraw (native)");
        _withdraw(address(token), "");
        _deliver(_pay(BUYER_KEY, address(token), TOKEN_PRICE, ""), "");
        _withdraw(address(token), "withdraw (ERC-20, steady state)");
    }

    // ---------------------------------------------------------------- helpers

    /// @dev Pays a fresh quote from `buyerKey`'s account, records the step, returns the order.
    function _pay(uint256 buyerKey, address tokenAddress, uint256 amount, string memory label)
        private
        returns (LiandongEscrow.Order memory)
    {
        address buyer = vm.addr(buyerKey);
        LiandongEscrow.Quote memory quote = _nextQuote(tokenAddress, amount, buyer);
        bytes memory signature = _signQuote(escrow, OPERATOR_KEY, quote);
        vm.startBroadcast(buyerKey);
        escrow.pay{value: tokenAddress == address(0) ? amount : 0}(quote, signature);
        vm.stopBroadcast();
        _step(label);
        return _orderOf(quote, buyer, FEE_BPS);
    }

    /// @dev Pays a native quote with the return-bomb contract as the buyer (the buyer key calls it).
    function _payFromBomb(ReturnBomb bomb) private returns (LiandongEscrow.Order memory) {
        LiandongEscrow.Quote memory quote = _nextQuote(address(0), NATIVE_PRICE, address(bomb));
        bytes memory signature = _signQuote(escrow, OPERATOR_KEY, quote);
        vm.startBroadcast(BUYER_KEY);
        bomb.execute{value: NATIVE_PRICE}(address(escrow), abi.encodeCall(escrow.pay, (quote, signature)));
        vm.stopBroadcast();
        _step("");
        return _orderOf(quote, address(bomb), FEE_BPS);
    }

    /// @dev Pays a token quote from the permit buyer, who never approved the escrow.
    function _payWithPermit(string memory label) private {
        address buyer = vm.addr(PERMIT_BUYER_KEY);
        LiandongEscrow.Quote memory quote = _nextQuote(address(token), TOKEN_PRICE, buyer);
        bytes memory signature = _signQuote(escrow, OPERATOR_KEY, quote);
        uint256 deadline = block.timestamp + 1 hours;
        bytes32 permitHash =
            keccak256(abi.encode(PERMIT_TYPEHASH, buyer, address(escrow), quote.amount, token.nonces(buyer), deadline));
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(PERMIT_BUYER_KEY, keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), permitHash)));
        vm.startBroadcast(PERMIT_BUYER_KEY);
        escrow.payWithPermit(quote, signature, LiandongEscrow.Permit({deadline: deadline, v: v, r: r, s: s}));
        vm.stopBroadcast();
        _step(label);
    }

    function _deliver(LiandongEscrow.Order memory order, string memory label) private {
        vm.startBroadcast(OPERATOR_KEY);
        escrow.recordDelivery(order, keccak256(abi.encode("key", order.orderId)));
        vm.stopBroadcast();
        _step(label);
    }

    function _withdraw(address tokenAddress, string memory label) private {
        vm.startBroadcast(PAYOUT_KEY);
        escrow.withdraw(tokenAddress);
        vm.stopBroadcast();
        _step(label);
    }

    /// @dev Order ids are full 32-byte hashes, as the shop's ids are, so calldata costs are real.
    function _nextQuote(address tokenAddress, uint256 amount, address buyer)
        private
        returns (LiandongEscrow.Quote memory quote)
    {
        quote = _quote(keccak256(abi.encode("order", ++_orderCount)), tokenAddress, amount, buyer);
        quote.productId = 42;
    }

    function _step(string memory label) private {
        _step(label, 1);
    }

    /// @dev Records the transaction just sent: `label;orders|` (see the contract's notice).
    function _step(string memory label, uint256 orders) private {
        _labels = string.concat(_labels, label, ";", vm.toString(orders), "|");
    }

    function _setUpSteps(uint256 count) private {
        for (uint256 i; i < count; ++i) {
            _step("");
        }
    }
}
