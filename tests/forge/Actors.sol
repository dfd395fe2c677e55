// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

// Hostile and unusual accounts for the escrow's tests: buyers that burn gas, return huge buffers or
// re-enter when paid, a smart wallet behind a proxy, a token that calls its holders on transfer,
// and a contract that forces the native coin on the escrow.

/// @notice What {HookToken} calls on an account that registered for hooks.
interface ITokenHook {
    function onTokenTransfer(address from, address to, uint256 amount) external;
}

/// @notice An ERC-20 with ERC-777-style transfer hooks: an account that registered is called on
/// every transfer from or to it, and a hook that reverts makes the transfer revert (a refusal).
contract HookToken is ERC20 {
    mapping(address account => bool) public hooked;

    constructor() ERC20("Hook Token", "HOOK") {}

    /// @notice Mints `amount` to `to` (minting and burning call no hooks).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Registers (or unregisters) the caller for transfer hooks.
    function registerHook(bool on) external {
        hooked[msg.sender] = on;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (from == address(0) || to == address(0)) return;
        if (hooked[from]) ITokenHook(from).onTokenTransfer(from, to, value);
        if (to != from && hooked[to]) ITokenHook(to).onTokenTransfer(from, to, value);
    }
}

/// @notice A contract account that can act as a buyer: `execute` makes it the caller of anything.
abstract contract ActorWallet {
    /// @notice Forwards a call (`pay`, `approve`, `claimRefund`...) so that this contract is the caller.
    function execute(address target, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory result) = target.call{value: msg.value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 32), mload(result))
            }
        }
        return result;
    }
}

/// @notice A buyer whose `receive()` (and hook, when it receives) loops until it runs out of gas.
contract GasBurner is ActorWallet, ITokenHook {
    uint256 public counter;

    receive() external payable {
        _burn();
    }

    function onTokenTransfer(address, address to, uint256) external {
        if (to == address(this)) _burn();
    }

    function _burn() private {
        uint256 i;
        while (gasleft() > 0) {
            ++i;
        }
        counter = i;
    }
}

/// @notice A buyer whose `receive()` returns or reverts with 300 KB, and whose token hook reverts
/// with 300 KB when it receives: a "return bomb" for a caller that copies return data.
contract ReturnBomb is ActorWallet, ITokenHook {
    uint256 public constant BOMB_SIZE = 300_000;
    bool public reverts = true;

    function setReverts(bool value) external {
        reverts = value;
    }

    receive() external payable {
        bool doRevert = reverts;
        assembly {
            if doRevert { revert(0, 300000) }
            return(0, 300000)
        }
    }

    function onTokenTransfer(address, address to, uint256) external view {
        if (to != address(this)) return;
        assembly {
            revert(0, 300000)
        }
    }
}

/// @notice A buyer that, whenever it is paid (native coin or a hooked token), tries to re-enter the
/// escrow to claim its credited refunds again. It accepts the funds whatever happens and counts
/// re-entries that went through, which must stay at zero.
contract ReentrantBuyer is ActorWallet, ITokenHook {
    address public immutable escrow;
    uint256 public reentries;
    /// @dev Starts at 1 so that counting an attempt rewrites a non-zero slot (5,000 gas, not 22,100).
    uint256 public attempts = 1;

    constructor(address escrow_) {
        escrow = escrow_;
    }

    receive() external payable {
        _reenter(address(0));
    }

    function onTokenTransfer(address, address, uint256) external {
        _reenter(msg.sender);
    }

    function _reenter(address token) private {
        // Bounded gas, so that a refund's stipend is enough for the attempt and for accepting.
        (bool ok,) = escrow.call{gas: 6_000}(abi.encodeWithSignature("claimRefund(address,address)", token, this));
        ++attempts;
        if (ok) ++reentries;
    }
}

/// @notice The logic of a Safe-like smart wallet: its `receive()` emits an event, as Safe's does.
contract SafeLikeSingleton is ActorWallet {
    event SafeReceived(address indexed sender, uint256 value);

    receive() external payable {
        emit SafeReceived(msg.sender, msg.value);
    }
}

/// @notice A Safe-like proxy: every call, a plain transfer of the native coin included, is a
/// delegatecall to the singleton read from storage (as SafeProxy does). Receiving therefore costs
/// a cold storage read, a cold delegatecall and an event: far more than the 2,300 gas `transfer`
/// forwards, well within a refund's stipend.
contract SafeLikeProxy {
    address private _singleton;

    constructor(address singleton) {
        _singleton = singleton;
    }

    fallback() external payable {
        address singleton = _singleton;
        assembly ("memory-safe") {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), singleton, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }
}

/// @notice Forces the native coin on `target`, which has no `receive()`, by self-destructing
/// in its constructor (still possible after EIP-6780 within the creating transaction).
contract ForceSender {
    constructor(address payable target) payable {
        selfdestruct(target);
    }
}
