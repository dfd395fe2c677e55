// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {LiandongEscrow} from "../../contracts/LiandongEscrow.sol";

// forge-std cannot be installed here (no network), so this file declares the few cheatcodes and
// invariant-runner hooks the forge tests and the gas scenario use. Cheatcode signatures follow
// forge-std's Vm.sol; anything not listed here is simply not used.

/// @notice The subset of forge's cheatcode interface that the tests and the gas scenario call.
interface Vm {
    // Environment
    function warp(uint256 newTimestamp) external;
    function deal(address account, uint256 newBalance) external;
    function getNonce(address account) external view returns (uint64 nonce);
    function setNonce(address account, uint64 newNonce) external;
    function prank(address msgSender) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
    function label(address account, string calldata newLabel) external;

    // Keys and signatures
    function addr(uint256 privateKey) external pure returns (address);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);

    // Expectations
    function expectRevert() external;
    function expectRevert(bytes4 revertData) external;
    function expectRevert(bytes calldata revertData) external;
    function expectEmit(address emitter) external;
    function recordLogs() external;
    function getRecordedLogs() external returns (VmLog[] memory logs);

    // Gas of the last call made by the test (forge-std's `Vm.lastCallGas`)
    function lastCallGas() external view returns (VmGas memory gas);

    // Fuzzing
    function assume(bool condition) external pure;

    // Assertions (they revert with a readable message when they fail)
    function assertEq(uint256 left, uint256 right, string calldata error) external pure;
    function assertEq(address left, address right, string calldata error) external pure;
    function assertEq(bytes32 left, bytes32 right, string calldata error) external pure;
    function assertEq(bool left, bool right, string calldata error) external pure;
    function assertTrue(bool condition, string calldata error) external pure;
    function assertFalse(bool condition, string calldata error) external pure;
    function assertLe(uint256 left, uint256 right, string calldata error) external pure;
    function assertGt(uint256 left, uint256 right, string calldata error) external pure;

    // Scripts
    function startBroadcast(uint256 privateKey) external;
    function stopBroadcast() external;
    function toString(uint256 value) external pure returns (string memory);
}

/// @notice A log as `vm.getRecordedLogs` returns it (forge-std's `Vm.Log`).
struct VmLog {
    bytes32[] topics;
    bytes data;
    address emitter;
}

/// @notice Gas figures of a call as `vm.lastCallGas` returns them (forge-std's `Vm.Gas`).
struct VmGas {
    uint64 gasLimit;
    uint64 gasTotalUsed;
    uint64 gasMemoryUsed;
    int64 gasRefunded;
    uint64 gasRemaining;
}

/// @notice What forge's invariant runner reads from `targetSelectors()` (same layout as forge-std).
struct FuzzSelector {
    address addr;
    bytes4[] selectors;
}

/// @notice The cheatcode handle and the helpers shared by tests, handlers and the gas scenario.
abstract contract EscrowHelpers {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @dev EIP-712 domain type; the digest is rebuilt here rather than taken from
    /// `escrow.quoteDigest`, so the tests also check that the escrow signs the standard encoding.
    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    /// @notice The EIP-712 digest of `quote` for `escrow`, computed independently of the contract.
    function _quoteDigest(LiandongEscrow escrow, LiandongEscrow.Quote memory quote) internal view returns (bytes32) {
        bytes32 domainSeparator = keccak256(
            abi.encode(_DOMAIN_TYPEHASH, keccak256("LiandongEscrow"), keccak256("1"), block.chainid, address(escrow))
        );
        bytes32 structHash = keccak256(abi.encode(escrow.QUOTE_TYPEHASH(), quote));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator, structHash));
    }

    /// @notice Signs `quote` with `signerKey` as the 65-byte `r ‖ s ‖ v` signature `pay` expects.
    function _signQuote(LiandongEscrow escrow, uint256 signerKey, LiandongEscrow.Quote memory quote)
        internal
        view
        returns (bytes memory)
    {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(signerKey, _quoteDigest(escrow, quote));
        return abi.encodePacked(r, s, v);
    }

    /// @notice The settlement terms of `quote` once `buyer` has paid it while the escrow's fee was
    /// `feeBps` (what {OrderPaid} emits).
    function _orderOf(LiandongEscrow.Quote memory quote, address buyer, uint16 feeBps)
        internal
        pure
        returns (LiandongEscrow.Order memory)
    {
        return LiandongEscrow.Order({
            orderId: quote.orderId,
            buyer: buyer,
            token: quote.token,
            amount: quote.amount,
            deliveryDeadline: quote.deliveryDeadline,
            feeBps: feeBps
        });
    }

    /// @notice Maps `x` into `[min, max]` without discarding fuzz runs (unlike `vm.assume`).
    function _bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        return min + x % (max - min + 1);
    }

    /// @notice A quote for one unit of product 1, valid for an hour, to be delivered within a day.
    function _quote(bytes32 orderId, address token, uint256 amount, address buyer)
        internal
        view
        returns (LiandongEscrow.Quote memory)
    {
        return LiandongEscrow.Quote({
            orderId: orderId,
            productId: 1,
            quantity: 1,
            token: token,
            amount: amount,
            buyer: buyer,
            expiry: uint64(block.timestamp + 1 hours),
            deliveryDeadline: uint64(block.timestamp + 1 days)
        });
    }
}

/// @notice Base of the forge tests: fixed roles and a deployed escrow.
abstract contract TestBase is EscrowHelpers {
    uint256 internal constant OPERATOR_KEY = 0x0DE7A70;
    uint16 internal constant INITIAL_FEE_BPS = 250;

    address internal owner = address(0x0111);
    address internal payout = address(0x0222);
    address internal feeRecipient = address(0x0333);
    address internal operator;
    LiandongEscrow internal escrow;

    /// @notice Deploys the escrow with the operator derived from {OPERATOR_KEY} and labels the roles.
    function _deployEscrow() internal {
        operator = vm.addr(OPERATOR_KEY);
        escrow = new LiandongEscrow(owner, operator, payout, feeRecipient, INITIAL_FEE_BPS);
        vm.label(address(escrow), "escrow");
        vm.label(owner, "owner");
        vm.label(operator, "operator");
        vm.label(payout, "payout");
        vm.label(feeRecipient, "feeRecipient");
    }

    /// @notice Signs `quote` with the escrow's operator key.
    function _sign(LiandongEscrow.Quote memory quote) internal view returns (bytes memory) {
        return _signQuote(escrow, OPERATOR_KEY, quote);
    }
}

/// @notice The hooks forge's invariant runner calls, as in forge-std's StdInvariant: without
/// them the runner would call every function of every contract the test deployed, escrow and
/// tokens included, instead of only the handler.
abstract contract InvariantBase {
    address[] private _contracts;
    FuzzSelector[] private _selectors;

    /// @notice Restricts the fuzzed calls to `target`.
    function _targetContract(address target) internal {
        _contracts.push(target);
    }

    /// @notice Restricts the fuzzed calls on `target` to `selectors`.
    function _targetSelectorsOf(address target, bytes4[] memory selectors) internal {
        _selectors.push(FuzzSelector({addr: target, selectors: selectors}));
    }

    function targetContracts() public view returns (address[] memory) {
        return _contracts;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _selectors;
    }
}
