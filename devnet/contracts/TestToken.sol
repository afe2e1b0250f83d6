// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestToken
/// @notice Devnet ERC-20 that anyone may mint. It only exists so that the stream manager has a
///         token to pull deposits from; it must never be deployed anywhere that matters.
contract TestToken is ERC20 {
    constructor() ERC20("chainsync Test Token", "CSTT") {}

    /// @notice Creates `amount` tokens (base units) for `to`. Unrestricted on purpose.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
