// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title IStreamLockManager
/// @notice Types, events and the functions a Producer calls on the stream lock manager.
/// @dev The event signatures and their indexed parameters are the contract an indexer relies on:
///      changing any of them changes a topic0.
interface IStreamLockManager {
    /// @notice Why a stream was settled. Encoded as uint8 in `StreamSettled`.
    enum SettlementTrigger {
        UserCancellation,
        ProducerClaim,
        AutoExpiration,
        ConsumerUsage
    }

    /// @notice How a lock releases its funds: by time, by time after a cliff, or per usage.
    enum StreamType {
        REGULAR,
        VESTING,
        USAGE_POOL
    }

    /// @notice The stream record returned by `getTokenLock`.
    /// @dev For USAGE_POOL locks `usageCount` is the number of prepaid usages and `usedCount`
    ///      how many were consumed; the price of one usage is `totalAmount / usageCount`.
    struct TokenLock {
        address user;
        address recipient;
        address token;
        uint256 totalAmount;
        uint256 streamRate;
        uint256 startTime;
        uint256 endTime;
        uint256 lastClaimTime;
        bool isActive;
        bytes32 lockId;
        StreamType streamType;
        uint256 cliffDate;
        uint256 usageCount;
        uint256 usedCount;
        uint256 immediateAmount;
    }

    /// @notice One item of `batchCreateStreams`.
    struct StreamParams {
        address recipient;
        address token;
        uint256 totalAmount;
        uint256 duration;
    }

    event StreamLockCreated(
        bytes32 indexed lockId,
        address indexed user,
        address indexed recipient,
        address token,
        uint256 totalAmount,
        uint256 duration
    );

    event StreamSettled(
        bytes32 indexed lockId,
        address indexed user,
        address indexed recipient,
        uint256 settledAmount,
        uint256 returnedAmount,
        SettlementTrigger trigger
    );

    event PartialClaim(bytes32 indexed lockId, address indexed recipient, uint256 amount);

    event ProducerBatchClaim(address indexed producer, uint256 totalClaimed, uint256 streamCount);

    event EmergencyWithdraw(bytes32 indexed lockId, address indexed user, uint256 amount);

    event CustomerPlanStreamCreated(
        uint256 indexed customerPlanId,
        bytes32 indexed lockId,
        address indexed customer,
        address producer
    );

    event StreamUsageRecorded(bytes32 indexed lockId, uint256 usageAmount, uint256 accruedAmount, uint256 timestamp);

    /// @notice Opens a stream for `customer` towards `producer` on behalf of a customer plan.
    function createStreamForCustomerPlan(
        uint256 customerPlanId,
        address customer,
        address producer,
        address token,
        uint256 totalAmount,
        uint256 duration
    ) external returns (bytes32 lockId);

    /// @notice Settles a stream; the trigger depends on who calls and when.
    function settleStream(bytes32 lockId) external returns (uint256 settledAmount, uint256 returnedAmount);

    /// @notice Settles every expired stream whose recipient is the caller.
    function claimStreamsByProducer() external returns (uint256 totalClaimed);

    /// @notice Records one use of a stream by its consumer (emits `StreamUsageRecorded`).
    function updateStreamOnUsage(bytes32 lockId, uint256 usageAmount) external returns (bool success);

    /// @notice The stream record; reverts `StreamNotFound()` for an unknown id.
    function getTokenLock(bytes32 lockId) external view returns (TokenLock memory lock);

    /// @notice Whether `consumer` owns the active, unexpired stream `lockId`.
    function canConsumerUse(address consumer, bytes32 lockId) external view returns (bool canUse);
}
