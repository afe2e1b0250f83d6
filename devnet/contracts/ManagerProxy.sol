// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

// The stream lock manager is deployed behind OpenZeppelin's ERC-1967 proxy, unchanged; importing
// it here makes the compile script emit its artifact.
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
