// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";

import {IStreamLockManager} from "./interfaces/IStreamLockManager.sol";
import {Producer} from "./Producer.sol";
import {ProducerStorage} from "./ProducerStorage.sol";

/// @title Factory
/// @notice Creates one Producer clone per producer and registers it in ProducerStorage.
contract Factory {
    /// @notice The Producer implementation every clone delegates to.
    address public immutable producerImplementation;
    /// @notice The registry clones are recorded in.
    ProducerStorage public immutable producerStorage;
    /// @notice The stream lock manager (proxy) handed to every clone.
    IStreamLockManager public immutable manager;

    constructor(address producerImplementation_, ProducerStorage producerStorage_, IStreamLockManager manager_) {
        producerImplementation = producerImplementation_;
        producerStorage = producerStorage_;
        manager = manager_;
    }

    /// @notice Creates a Producer clone owned by the caller. The registry emits `LogProducer`
    ///         before the clone is initialized.
    function newBcontract(string calldata name) external returns (address clone) {
        clone = Clones.clone(producerImplementation);
        uint256 producerId = producerStorage.addProducer(msg.sender, name, clone);
        Producer(clone).initialize(msg.sender, manager, producerId, name);
    }
}
