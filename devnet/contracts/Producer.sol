// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";

import {IStreamLockManager} from "./interfaces/IStreamLockManager.sol";

/// @title Producer
/// @notice A producer's storefront: plans, customer plans, and the streams that pay for them.
///         Deployed once as an implementation and cloned (EIP-1167) by the Factory per producer.
/// @dev Opening a customer plan's stream is best effort: if the manager refuses (this clone not
///      authorized, customer without allowance, manager paused...) the plan still exists and no
///      event says that its stream is missing. The production system behaves the same way.
contract Producer is Initializable, OwnableUpgradeable {
    /// @notice A plan customers can subscribe to.
    struct Plan {
        string name;
        uint8 planType;
        address token;
        uint256 price;
        uint256 duration;
    }

    /// @notice A customer's subscription to a plan.
    struct CustomerPlan {
        uint256 planId;
        address customer;
        bytes32 streamLockId;
    }

    event LogAddPlan(uint256 planId, address producerAddress, string name, uint8 planType);
    event CustomerPlanWithStreamCreated(
        uint256 indexed customerPlanId, bytes32 indexed streamLockId, address indexed customer
    );
    event StreamUsageValidated(
        uint256 indexed customerPlanId, bytes32 indexed streamLockId, address indexed customer, bool canUse
    );

    error UnknownPlan();
    error UnknownCustomerPlan();

    /// @notice The stream lock manager (proxy) this producer opens streams with.
    IStreamLockManager public manager;
    /// @notice Id given by ProducerStorage.
    uint256 public producerId;
    /// @notice Display name.
    string public name;
    /// @notice Number of plans; ids run from 1 to this value.
    uint256 public planCount;
    /// @notice Number of customer plans created by this producer.
    uint256 public customerPlanCount;

    mapping(uint256 planId => Plan) private _plans;
    mapping(uint256 customerPlanId => CustomerPlan) private _customerPlans;

    constructor() {
        _disableInitializers();
    }

    /// @notice Called by the Factory right after cloning.
    function initialize(address owner_, IStreamLockManager manager_, uint256 producerId_, string calldata name_)
        external
        initializer
    {
        __Ownable_init(owner_);
        manager = manager_;
        producerId = producerId_;
        name = name_;
    }

    /// @notice Adds a plan priced `price` (base units of `token`) streamed over `duration` seconds.
    function addPlan(string calldata planName, uint8 planType, address token, uint256 price, uint256 duration)
        external
        onlyOwner
        returns (uint256 planId)
    {
        planId = ++planCount;
        _plans[planId] = Plan(planName, planType, token, price, duration);
        emit LogAddPlan(planId, address(this), planName, planType);
    }

    /// @notice Subscribes the caller to `planId` and tries to open the stream that pays for it.
    /// @dev Customer plan ids embed the producer id (high 128 bits), so they are unique across
    ///      producers.
    function addCustomerPlanWithStream(uint256 planId) external returns (uint256 customerPlanId, bytes32 lockId) {
        Plan storage plan = _plans[planId];
        if (plan.token == address(0)) revert UnknownPlan();
        customerPlanId = (producerId << 128) | ++customerPlanCount;
        _customerPlans[customerPlanId] = CustomerPlan(planId, msg.sender, bytes32(0));
        try manager.createStreamForCustomerPlan(
            customerPlanId, msg.sender, address(this), plan.token, plan.price, plan.duration
        ) returns (bytes32 created) {
            lockId = created;
            _customerPlans[customerPlanId].streamLockId = created;
            emit CustomerPlanWithStreamCreated(customerPlanId, created, msg.sender);
        } catch {
            // Swallowed on purpose (see the contract notes).
        }
    }

    /// @notice Checks that a customer plan's stream still pays for the service and records one
    ///         use. An expired, still active stream is settled on the spot (trigger ConsumerUsage).
    function validateUsage(uint256 customerPlanId) external returns (bool canUse) {
        CustomerPlan storage customerPlan = _customerPlans[customerPlanId];
        if (customerPlan.customer == address(0)) revert UnknownCustomerPlan();
        bytes32 lockId = customerPlan.streamLockId;
        if (lockId != bytes32(0)) {
            canUse = manager.canConsumerUse(customerPlan.customer, lockId);
            if (canUse) {
                manager.updateStreamOnUsage(lockId, 1);
            } else {
                IStreamLockManager.TokenLock memory lock = manager.getTokenLock(lockId);
                if (lock.isActive && block.timestamp >= lock.endTime) {
                    manager.settleStream(lockId);
                }
            }
        }
        emit StreamUsageValidated(customerPlanId, lockId, customerPlan.customer, canUse);
    }

    /// @notice Settles every expired stream paying this producer (emits `ProducerBatchClaim`).
    function claimStreams() external onlyOwner returns (uint256 totalClaimed) {
        return manager.claimStreamsByProducer();
    }

    /// @notice A plan (empty if unknown).
    function getPlan(uint256 planId) external view returns (Plan memory) {
        return _plans[planId];
    }

    /// @notice A customer plan (empty if unknown); `streamLockId` is zero if no stream was opened.
    function getCustomerPlan(uint256 customerPlanId) external view returns (CustomerPlan memory) {
        return _customerPlans[customerPlanId];
    }
}
