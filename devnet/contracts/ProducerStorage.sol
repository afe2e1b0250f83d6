// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title ProducerStorage
/// @notice Registry of producers and their Producer clones.
/// @dev `LogProducer` is the only event that names a new clone's address, which is how an
///      indexer discovers the clones it has to follow.
contract ProducerStorage is Ownable {
    /// @notice One registered producer.
    struct ProducerInfo {
        uint256 producerId;
        address producerAddress;
        address cloneAddress;
        string name;
    }

    event LogProducer(address producerAddress, string name, uint256 producerId, address cloneAddress);

    error OnlyFactory();
    error AlreadyRegistered();

    /// @notice The only address allowed to register producers.
    address public factory;
    /// @notice Number of registered producers; ids run from 1 to this value.
    uint256 public producerCount;

    mapping(address clone => ProducerInfo) private _byClone;
    address[] private _clones;

    constructor() Ownable(msg.sender) {}

    /// @notice Sets the factory. Emits nothing.
    function setFactory(address factory_) external onlyOwner {
        factory = factory_;
    }

    /// @notice Registers `cloneAddress` as the contract of producer `producerAddress`.
    function addProducer(address producerAddress, string calldata name, address cloneAddress)
        external
        returns (uint256 producerId)
    {
        if (msg.sender != factory) revert OnlyFactory();
        if (_byClone[cloneAddress].producerId != 0) revert AlreadyRegistered();
        producerId = ++producerCount;
        _byClone[cloneAddress] = ProducerInfo(producerId, producerAddress, cloneAddress, name);
        _clones.push(cloneAddress);
        emit LogProducer(producerAddress, name, producerId, cloneAddress);
    }

    /// @notice The registration of a clone (zero id if unknown).
    function getProducer(address cloneAddress) external view returns (ProducerInfo memory) {
        return _byClone[cloneAddress];
    }

    /// @notice Every registered clone, in registration order.
    function getClones() external view returns (address[] memory) {
        return _clones;
    }
}
