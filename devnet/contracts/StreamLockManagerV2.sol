// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {StreamLockManager} from "./StreamLockManager.sol";

/// @title StreamLockManagerV2
/// @notice Upgrade target for the devnet: same storage layout and behaviour, reports version 2.
contract StreamLockManagerV2 is StreamLockManager {
    /// @notice Implementation version.
    function version() external pure override returns (uint256) {
        return 2;
    }
}
