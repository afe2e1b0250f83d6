// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title VirtualBalance
/// @notice Per (user, token) accounting of tokens held by this contract on behalf of users.
///         `total` is what the user deposited and has not been paid out or withdrawn, `locked` is
///         the part reserved by open streams, and `unlocked = total - locked`.
/// @dev The storage below sits in the first slots of the inheriting contract. Upgrades must keep
///      it where it is.
abstract contract VirtualBalance {
    using SafeERC20 for IERC20;

    mapping(address user => mapping(address token => uint256)) private _total;
    mapping(address user => mapping(address token => uint256)) private _locked;

    event BalanceDeposited(address indexed user, address indexed token, uint256 amount);
    event BalanceLocked(address indexed user, address indexed token, uint256 amount);
    event BalanceUnlocked(address indexed user, address indexed token, uint256 amount);
    event BalanceWithdrawn(address indexed user, address indexed token, uint256 amount);

    error InvalidAmount();
    error InvalidToken();
    error InsufficientUnlockedBalance();

    /// @notice Deposited and not yet paid out or withdrawn.
    function getTotalBalance(address user, address token) public view returns (uint256) {
        return _total[user][token];
    }

    /// @notice Reserved by open streams.
    function getLockedBalance(address user, address token) public view returns (uint256) {
        return _locked[user][token];
    }

    /// @notice Free part of the total (never negative).
    function getUnlockedBalance(address user, address token) public view returns (uint256) {
        uint256 total = _total[user][token];
        uint256 locked = _locked[user][token];
        return total > locked ? total - locked : 0;
    }

    /// @notice The three balances in one call.
    function getBalanceSummary(address user, address token)
        external
        view
        returns (uint256 total, uint256 locked, uint256 unlocked)
    {
        total = getTotalBalance(user, token);
        locked = getLockedBalance(user, token);
        unlocked = getUnlockedBalance(user, token);
    }

    /// @dev Pulls `amount` from `user` (it must have approved this contract) and credits it.
    function _deposit(address user, address token, uint256 amount) internal {
        if (amount == 0) revert InvalidAmount();
        if (token == address(0)) revert InvalidToken();
        IERC20(token).safeTransferFrom(user, address(this), amount);
        _total[user][token] += amount;
        emit BalanceDeposited(user, token, amount);
    }

    /// @dev Reserves `amount` of the user's free balance.
    function _lock(address user, address token, uint256 amount) internal {
        if (amount == 0) revert InvalidAmount();
        if (getUnlockedBalance(user, token) < amount) revert InsufficientUnlockedBalance();
        _locked[user][token] += amount;
        emit BalanceLocked(user, token, amount);
    }

    /// @dev Frees up to `amount` of the user's reserved balance and returns how much was freed.
    ///      The total is untouched: freed funds stay with the user as unlocked balance.
    function _unlock(address user, address token, uint256 amount) internal returns (uint256 released) {
        uint256 locked = _locked[user][token];
        released = amount < locked ? amount : locked;
        if (released == 0) return 0;
        _locked[user][token] = locked - released;
        emit BalanceUnlocked(user, token, released);
    }

    /// @dev Pays `amount` of the user's free balance to `to`. Deliberately emits no balance event:
    ///      the payment is visible only as the token's own Transfer.
    function _payOut(address user, address to, address token, uint256 amount) internal {
        if (getUnlockedBalance(user, token) < amount) revert InsufficientUnlockedBalance();
        _total[user][token] -= amount;
        IERC20(token).safeTransfer(to, amount);
    }

    /// @dev Sends `amount` of the user's free balance back to the user.
    function _withdraw(address user, address token, uint256 amount) internal {
        if (amount == 0) revert InvalidAmount();
        if (getUnlockedBalance(user, token) < amount) revert InsufficientUnlockedBalance();
        _total[user][token] -= amount;
        IERC20(token).safeTransfer(user, amount);
        emit BalanceWithdrawn(user, token, amount);
    }
}
