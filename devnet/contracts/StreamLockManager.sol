// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";
import {PausableUpgradeable} from "@openzeppelin/contracts-upgradeable/utils/PausableUpgradeable.sol";
import {ReentrancyGuardUpgradeable} from "@openzeppelin/contracts-upgradeable/utils/ReentrancyGuardUpgradeable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts-upgradeable/proxy/utils/UUPSUpgradeable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

import {IStreamLockManager} from "./interfaces/IStreamLockManager.sol";
import {VirtualBalance} from "./VirtualBalance.sol";

/// @title StreamLockManager
/// @notice Locks ERC-20 deposits and streams them linearly to a recipient, or pays them out per
///         usage from a prepaid pool. Deployed behind an ERC-1967 proxy and upgraded with UUPS.
/// @dev Behaviour an indexer has to live with, kept on purpose because the production system has it:
///      - every lock id is keccak256(user, recipient, token, totalAmount, duration, timestamp,
///        number), so identical creations in one block collide and the later one overwrites the
///        record of the earlier one, whose deposit stays locked for good;
///      - the returned part of a settled stream stays in the manager as unlocked balance;
///      - `streamRate` is rounded down, so an expired stream still returns some dust;
///      - usage-pool payouts unlock without lowering the user's total balance;
///      - settling emits `BalanceUnlocked` for the full amount and pays the recipient without a
///        balance event; afterwards only `isActive` changes in the record.
contract StreamLockManager is
    Initializable,
    OwnableUpgradeable,
    PausableUpgradeable,
    ReentrancyGuardUpgradeable,
    UUPSUpgradeable,
    VirtualBalance,
    IStreamLockManager
{
    using SafeERC20 for IERC20;

    mapping(bytes32 lockId => TokenLock) private _locks;
    /// Active lock ids per recipient, so that a producer's batch claim only visits open streams.
    mapping(address recipient => bytes32[]) private _openByRecipient;
    /// 1-based position of an active lock id in `_openByRecipient`; 0 once it is closed.
    mapping(bytes32 lockId => uint256) private _openPosition;
    mapping(uint256 customerPlanId => bytes32) private _customerPlanStreams;

    /// @notice Contracts (producer clones) allowed to open plan streams and record usage.
    mapping(address caller => bool) public authorizedCallers;
    /// @notice Smallest `totalAmount` a stream may lock.
    uint256 public minStreamAmount;
    /// @notice Shortest allowed stream, in seconds.
    uint256 public minStreamDuration;
    /// @notice Longest allowed stream, in seconds.
    uint256 public maxStreamDuration;

    error StreamNotFound();
    error StreamNotActive();
    error UnauthorizedCaller();
    error UnauthorizedSettlement();
    error InvalidStreamParams();
    error OnlyStreamOwner();
    error NotUsagePool();
    error UsageExceedsPool();

    /// @custom:oz-upgrades-unsafe-allow constructor
    constructor() {
        _disableInitializers();
    }

    /// @notice Sets the owner and the stream limits. Called once, through the proxy.
    /// @dev The owner is set twice (by `__Ownable_init` and again explicitly), so a deployment
    ///      emits `OwnershipTransferred` twice, like the production contract does.
    function initialize(address owner_, uint256 minAmount, uint256 minDuration, uint256 maxDuration)
        external
        initializer
    {
        __Ownable_init(owner_);
        __Pausable_init();
        __ReentrancyGuard_init();
        __UUPSUpgradeable_init();
        minStreamAmount = minAmount;
        minStreamDuration = minDuration;
        maxStreamDuration = maxDuration;
        _transferOwnership(owner_);
    }

    modifier onlyAuthorized() {
        if (!authorizedCallers[msg.sender] && msg.sender != owner()) revert UnauthorizedCaller();
        _;
    }

    modifier existingLock(bytes32 lockId) {
        if (_locks[lockId].user == address(0)) revert StreamNotFound();
        _;
    }

    // ----------------------------------------------------------------------------------------
    // Creation (blocked while paused)
    // ----------------------------------------------------------------------------------------

    /// @notice Deposits `totalAmount` of `token` from the caller and streams it to `recipient`
    ///         over `duration` seconds.
    function createStreamLock(address recipient, address token, uint256 totalAmount, uint256 duration)
        external
        nonReentrant
        whenNotPaused
        returns (bytes32 lockId)
    {
        return _create(msg.sender, recipient, token, totalAmount, duration, StreamType.REGULAR, 0);
    }

    /// @notice Creates one stream per item, in order, all paid by the caller.
    function batchCreateStreams(StreamParams[] calldata params)
        external
        nonReentrant
        whenNotPaused
        returns (bytes32[] memory lockIds)
    {
        lockIds = new bytes32[](params.length);
        for (uint256 i = 0; i < params.length; i++) {
            StreamParams calldata item = params[i];
            lockIds[i] =
                _create(msg.sender, item.recipient, item.token, item.totalAmount, item.duration, StreamType.REGULAR, 0);
        }
    }

    /// @notice Prepays `usageCount` usages worth `totalAmount` in total; the recipient is paid per
    ///         consumed usage (`consumeUsageFromPool`) instead of by time.
    function createUsagePool(
        address recipient,
        address token,
        uint256 totalAmount,
        uint256 usageCount,
        uint256 duration
    ) external nonReentrant whenNotPaused returns (bytes32 poolId) {
        if (usageCount == 0 || totalAmount < usageCount) revert InvalidStreamParams();
        return _create(msg.sender, recipient, token, totalAmount, duration, StreamType.USAGE_POOL, usageCount);
    }

    /// @inheritdoc IStreamLockManager
    function createStreamForCustomerPlan(
        uint256 customerPlanId,
        address customer,
        address producer,
        address token,
        uint256 totalAmount,
        uint256 duration
    ) external onlyAuthorized nonReentrant whenNotPaused returns (bytes32 lockId) {
        lockId = _create(customer, producer, token, totalAmount, duration, StreamType.REGULAR, 0);
        _customerPlanStreams[customerPlanId] = lockId;
        emit CustomerPlanStreamCreated(customerPlanId, lockId, customer, producer);
    }

    function _create(
        address user,
        address recipient,
        address token,
        uint256 totalAmount,
        uint256 duration,
        StreamType streamType,
        uint256 usageCount
    ) private returns (bytes32 lockId) {
        if (recipient == address(0) || token == address(0)) revert InvalidStreamParams();
        if (totalAmount == 0 || totalAmount < minStreamAmount) revert InvalidStreamParams();
        if (duration == 0 || duration < minStreamDuration || duration > maxStreamDuration) {
            revert InvalidStreamParams();
        }
        uint256 rate = totalAmount / duration;
        if (rate == 0) revert InvalidStreamParams();

        lockId = keccak256(
            abi.encodePacked(user, recipient, token, totalAmount, duration, block.timestamp, block.number)
        );

        _deposit(user, token, totalAmount);
        _lock(user, token, totalAmount);

        // A colliding id overwrites the earlier record (see the contract notes).
        _locks[lockId] = TokenLock({
            user: user,
            recipient: recipient,
            token: token,
            totalAmount: totalAmount,
            streamRate: rate,
            startTime: block.timestamp,
            endTime: block.timestamp + duration,
            lastClaimTime: block.timestamp,
            isActive: true,
            lockId: lockId,
            streamType: streamType,
            cliffDate: 0,
            usageCount: usageCount,
            usedCount: 0,
            immediateAmount: 0
        });
        if (_openPosition[lockId] == 0) {
            _openByRecipient[recipient].push(lockId);
            _openPosition[lockId] = _openByRecipient[recipient].length;
        }

        emit StreamLockCreated(lockId, user, recipient, token, totalAmount, duration);
    }

    // ----------------------------------------------------------------------------------------
    // Settlement (allowed while paused)
    // ----------------------------------------------------------------------------------------

    /// @notice The stream's owner ends it early: the accrued part goes to the recipient, the rest
    ///         stays in the manager as the owner's unlocked balance.
    function cancelStream(bytes32 lockId) external existingLock(lockId) nonReentrant {
        if (_locks[lockId].user != msg.sender) revert OnlyStreamOwner();
        _settle(lockId, SettlementTrigger.UserCancellation);
    }

    /// @inheritdoc IStreamLockManager
    /// @dev Trigger by caller: the stream's user -> UserCancellation, an authorized contract ->
    ///      ConsumerUsage, the recipient -> ProducerClaim, anyone else once `endTime` has passed ->
    ///      AutoExpiration; anyone else before that is refused.
    function settleStream(bytes32 lockId)
        external
        existingLock(lockId)
        nonReentrant
        returns (uint256 settledAmount, uint256 returnedAmount)
    {
        TokenLock storage lock = _locks[lockId];
        SettlementTrigger trigger;
        if (msg.sender == lock.user) {
            trigger = SettlementTrigger.UserCancellation;
        } else if (authorizedCallers[msg.sender]) {
            trigger = SettlementTrigger.ConsumerUsage;
        } else if (msg.sender == lock.recipient) {
            trigger = SettlementTrigger.ProducerClaim;
        } else if (block.timestamp >= lock.endTime) {
            trigger = SettlementTrigger.AutoExpiration;
        } else {
            revert UnauthorizedSettlement();
        }
        return _settle(lockId, trigger);
    }

    /// @inheritdoc IStreamLockManager
    /// @dev Emits one `ProducerBatchClaim`, also when nothing was due.
    function claimStreamsByProducer() external nonReentrant returns (uint256 totalClaimed) {
        bytes32[] storage open = _openByRecipient[msg.sender];
        uint256 claimedCount = 0;
        uint256 i = 0;
        while (i < open.length) {
            bytes32 lockId = open[i];
            if (block.timestamp >= _locks[lockId].endTime) {
                // Settling swaps the last open id into position i, so i is not advanced.
                (uint256 settled,) = _settle(lockId, SettlementTrigger.ProducerClaim);
                totalClaimed += settled;
                claimedCount++;
            } else {
                i++;
            }
        }
        emit ProducerBatchClaim(msg.sender, totalClaimed, claimedCount);
    }

    /// @notice The stream's owner takes back everything still locked in it, without paying the
    ///         recipient.
    function emergencyWithdraw(bytes32 lockId) external existingLock(lockId) nonReentrant {
        TokenLock storage lock = _locks[lockId];
        if (lock.user != msg.sender) revert OnlyStreamOwner();
        if (!lock.isActive) revert StreamNotActive();
        uint256 amount = _stillLocked(lock);
        _close(lockId, lock);
        _unlock(lock.user, lock.token, amount);
        _withdraw(lock.user, lock.token, amount);
        emit EmergencyWithdraw(lockId, lock.user, amount);
    }

    function _settle(bytes32 lockId, SettlementTrigger trigger)
        private
        returns (uint256 settledAmount, uint256 returnedAmount)
    {
        TokenLock storage lock = _locks[lockId];
        if (!lock.isActive) revert StreamNotActive();
        settledAmount = _accrued(lock);
        uint256 unpaid = _stillLocked(lock);
        returnedAmount = unpaid - settledAmount;
        _close(lockId, lock);
        _unlock(lock.user, lock.token, unpaid);
        if (settledAmount > 0) {
            _payOut(lock.user, lock.recipient, lock.token, settledAmount);
        }
        emit StreamSettled(lockId, lock.user, lock.recipient, settledAmount, returnedAmount, trigger);
    }

    // ----------------------------------------------------------------------------------------
    // Usage
    // ----------------------------------------------------------------------------------------

    /// @notice Pays the pool's recipient for `usages` consumed usages. Callable by the recipient,
    ///         an authorized contract or the owner. The pool closes when every usage is consumed.
    function consumeUsageFromPool(bytes32 poolId, uint256 usages)
        external
        existingLock(poolId)
        nonReentrant
        returns (bool success)
    {
        TokenLock storage pool = _locks[poolId];
        if (msg.sender != pool.recipient && !authorizedCallers[msg.sender] && msg.sender != owner()) {
            revert UnauthorizedCaller();
        }
        if (!pool.isActive) revert StreamNotActive();
        if (pool.streamType != StreamType.USAGE_POOL) revert NotUsagePool();
        if (usages == 0 || pool.usedCount + usages > pool.usageCount) revert UsageExceedsPool();

        pool.usedCount += usages;
        uint256 amount = (pool.totalAmount / pool.usageCount) * usages;
        IERC20(pool.token).safeTransfer(pool.recipient, amount);
        // Unlocks without lowering the user's total: the production contract drifts this way.
        _unlock(pool.user, pool.token, amount);
        if (pool.usedCount == pool.usageCount) {
            _close(poolId, pool);
        }
        emit PartialClaim(poolId, pool.recipient, amount);
        return true;
    }

    /// @inheritdoc IStreamLockManager
    function updateStreamOnUsage(bytes32 lockId, uint256 usageAmount)
        external
        onlyAuthorized
        existingLock(lockId)
        returns (bool success)
    {
        TokenLock storage lock = _locks[lockId];
        if (!lock.isActive) revert StreamNotActive();
        emit StreamUsageRecorded(lockId, usageAmount, _accrued(lock), block.timestamp);
        return true;
    }

    // ----------------------------------------------------------------------------------------
    // Views
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IStreamLockManager
    function getTokenLock(bytes32 lockId) external view existingLock(lockId) returns (TokenLock memory lock) {
        return _locks[lockId];
    }

    /// @notice What the recipient would be paid if the stream were settled now (0 once closed).
    function calculateAccruedAmount(bytes32 lockId) external view existingLock(lockId) returns (uint256) {
        return _accrued(_locks[lockId]);
    }

    /// @inheritdoc IStreamLockManager
    function canConsumerUse(address consumer, bytes32 lockId) external view returns (bool canUse) {
        TokenLock storage lock = _locks[lockId];
        return lock.isActive && lock.user == consumer && block.timestamp < lock.endTime;
    }

    /// @notice The lock opened for a customer plan (zero if none was).
    function getCustomerPlanStream(uint256 customerPlanId) external view returns (bytes32) {
        return _customerPlanStreams[customerPlanId];
    }

    /// @notice Active lock ids whose recipient is `recipient`, in no particular order.
    function getOpenStreams(address recipient) external view returns (bytes32[] memory) {
        return _openByRecipient[recipient];
    }

    /// @notice Implementation version.
    function version() external pure virtual returns (uint256) {
        return 1;
    }

    // ----------------------------------------------------------------------------------------
    // Administration
    // ----------------------------------------------------------------------------------------

    /// @notice Allows or revokes a contract. Emits nothing (an indexer cannot see this).
    function setAuthorizedCaller(address caller, bool authorized) external onlyOwner {
        authorizedCallers[caller] = authorized;
    }

    /// @notice Changes the stream limits. Emits nothing.
    function updateStreamParams(uint256 minAmount, uint256 minDuration, uint256 maxDuration) external onlyOwner {
        minStreamAmount = minAmount;
        minStreamDuration = minDuration;
        maxStreamDuration = maxDuration;
    }

    /// @notice Stops stream creation; settlement keeps working.
    function pause() external onlyOwner {
        _pause();
    }

    /// @notice Allows stream creation again.
    function unpause() external onlyOwner {
        _unpause();
    }

    function _authorizeUpgrade(address) internal override onlyOwner {}

    // ----------------------------------------------------------------------------------------
    // Internals
    // ----------------------------------------------------------------------------------------

    /// Time streams: min(rate * elapsed, total). Usage pools accrue nothing by time: they are
    /// paid per consumed usage, so settling one pays nothing more.
    function _accrued(TokenLock storage lock) private view returns (uint256) {
        if (!lock.isActive || lock.streamType == StreamType.USAGE_POOL) return 0;
        uint256 until = block.timestamp < lock.endTime ? block.timestamp : lock.endTime;
        uint256 accrued = lock.streamRate * (until - lock.startTime);
        return accrued < lock.totalAmount ? accrued : lock.totalAmount;
    }

    /// The part of the lock not paid out yet: all of it for time streams (they pay only when
    /// settled), the unconsumed usages for pools.
    function _stillLocked(TokenLock storage lock) private view returns (uint256) {
        if (lock.streamType != StreamType.USAGE_POOL) return lock.totalAmount;
        return lock.totalAmount - (lock.totalAmount / lock.usageCount) * lock.usedCount;
    }

    function _close(bytes32 lockId, TokenLock storage lock) private {
        lock.isActive = false;
        uint256 position = _openPosition[lockId];
        if (position == 0) return;
        bytes32[] storage open = _openByRecipient[lock.recipient];
        bytes32 last = open[open.length - 1];
        open[position - 1] = last;
        _openPosition[last] = position;
        open.pop();
        delete _openPosition[lockId];
    }
}
