//! Event types of the StreamLockManager system, declared from the contracts' public interface.
//!
//! These types decode what the chain emits; they do not depend on the devnet test contracts.
//! [`decode_log`] turns a raw log into a [`DecodedEvent`], telling an unknown topic (kept raw)
//! apart from a known topic whose data does not decode (quarantined).

use alloy::primitives::{Address, Log as PrimitiveLog, B256};
use alloy::sol;
use alloy::sol_types::SolEvent;
use serde_json::{json, Value};

sol! {
    /// A stream locked `totalAmount` of `token` from `user` towards `recipient` over `duration` seconds.
    #[derive(Debug, PartialEq, Eq)]
    event StreamLockCreated(bytes32 indexed lockId, address indexed user, address indexed recipient, address token, uint256 totalAmount, uint256 duration);
    /// A stream was settled; `trigger`: 0 UserCancellation, 1 ProducerClaim, 2 AutoExpiration, 3 ConsumerUsage.
    #[derive(Debug, PartialEq, Eq)]
    event StreamSettled(bytes32 indexed lockId, address indexed user, address indexed recipient, uint256 settledAmount, uint256 returnedAmount, uint8 trigger);
    /// Part of a usage-pool stream was paid out to its recipient.
    #[derive(Debug, PartialEq, Eq)]
    event PartialClaim(bytes32 indexed lockId, address indexed recipient, uint256 amount);
    /// A producer claimed all of its expired streams at once.
    #[derive(Debug, PartialEq, Eq)]
    event ProducerBatchClaim(address indexed producer, uint256 totalClaimed, uint256 streamCount);
    /// The user pulled a stream's funds out in an emergency.
    #[derive(Debug, PartialEq, Eq)]
    event EmergencyWithdraw(bytes32 indexed lockId, address indexed user, uint256 amount);
    /// A producer opened a stream for one of its customer plans.
    #[derive(Debug, PartialEq, Eq)]
    event CustomerPlanStreamCreated(uint256 indexed customerPlanId, bytes32 indexed lockId, address indexed customer, address producer);
    /// Usage was recorded against a usage-pool stream.
    #[derive(Debug, PartialEq, Eq)]
    event StreamUsageRecorded(bytes32 indexed lockId, uint256 usageAmount, uint256 accruedAmount, uint256 timestamp);
    /// Tokens entered the user's virtual balance.
    #[derive(Debug, PartialEq, Eq)]
    event BalanceDeposited(address indexed user, address indexed token, uint256 amount);
    /// Part of the user's virtual balance was locked into a stream.
    #[derive(Debug, PartialEq, Eq)]
    event BalanceLocked(address indexed user, address indexed token, uint256 amount);
    /// Part of the user's virtual balance was unlocked.
    #[derive(Debug, PartialEq, Eq)]
    event BalanceUnlocked(address indexed user, address indexed token, uint256 amount);
    /// Tokens left the user's virtual balance.
    #[derive(Debug, PartialEq, Eq)]
    event BalanceWithdrawn(address indexed user, address indexed token, uint256 amount);
    /// The contract was paused (stream creation blocked).
    #[derive(Debug, PartialEq, Eq)]
    event Paused(address account);
    /// The contract was unpaused.
    #[derive(Debug, PartialEq, Eq)]
    event Unpaused(address account);
    /// The proxy now points at a new implementation.
    #[derive(Debug, PartialEq, Eq)]
    event Upgraded(address indexed implementation);
    /// An initializer ran.
    #[derive(Debug, PartialEq, Eq)]
    event Initialized(uint64 version);
    /// The owner changed.
    #[derive(Debug, PartialEq, Eq)]
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    /// A producer clone opened a customer plan with a stream.
    #[derive(Debug, PartialEq, Eq)]
    event CustomerPlanWithStreamCreated(uint256 indexed customerPlanId, bytes32 indexed streamLockId, address indexed customer);
    /// A producer clone validated a customer's usage of a stream.
    #[derive(Debug, PartialEq, Eq)]
    event StreamUsageValidated(uint256 indexed customerPlanId, bytes32 indexed streamLockId, address indexed customer, bool canUse);
    /// A producer clone added a plan.
    #[derive(Debug, PartialEq, Eq)]
    event LogAddPlan(uint256 planId, address producerAddress, string name, uint8 planType);
    /// The producer registry registered a producer and its clone address.
    #[derive(Debug, PartialEq, Eq)]
    event LogProducer(address producerAddress, string name, uint256 producerId, address cloneAddress);
}

sol! {
    /// The stream record of `getTokenLock` (field order as in the contract's interface).
    #[derive(Debug, PartialEq, Eq)]
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
        uint8 streamType;
        uint256 cliffDate;
        uint256 usageCount;
        uint256 usedCount;
        uint256 immediateAmount;
    }
    /// Reads a stream record; reverts `StreamNotFound()` for an unknown id.
    function getTokenLock(bytes32 lockId) external view returns (TokenLock memory lock);
    /// The manager's virtual balance of `user` in `token`.
    function getBalanceSummary(address user, address token) external view returns (uint256 total, uint256 locked, uint256 unlocked);

    /// Custom errors of the stream contracts, to name a revert.
    error AlreadyRegistered();
    /// See above.
    error InsufficientUnlockedBalance();
    /// See above.
    error InvalidAmount();
    /// See above.
    error InvalidStreamParams();
    /// See above.
    error InvalidToken();
    /// See above.
    error NotUsagePool();
    /// See above.
    error OnlyFactory();
    /// See above.
    error OnlyStreamOwner();
    /// See above.
    error StreamNotActive();
    /// See above.
    error StreamNotFound();
    /// See above.
    error UnauthorizedCaller();
    /// See above.
    error UnauthorizedSettlement();
    /// See above.
    error UnknownCustomerPlan();
    /// See above.
    error UnknownPlan();
    /// See above.
    error UsageExceedsPool();
}

/// Names a revert from its ABI-encoded data: `Error(string)` gives its message, a custom error of
/// the stream contracts its signature, anything else the 4-byte selector; `None` for empty data.
pub fn revert_reason(data: &[u8]) -> Option<String> {
    use alloy::sol_types::{Revert, SolError};
    if data.len() < 4 {
        return None;
    }
    if let Ok(revert) = Revert::abi_decode(data) {
        return Some(revert.reason);
    }
    let selector: [u8; 4] = data[..4].try_into().ok()?;
    macro_rules! named {
        ($($error:ident),*) => {
            $(if selector == $error::SELECTOR { return Some($error::SIGNATURE.to_owned()); })*
        };
    }
    named!(
        AlreadyRegistered,
        InsufficientUnlockedBalance,
        InvalidAmount,
        InvalidStreamParams,
        InvalidToken,
        NotUsagePool,
        OnlyFactory,
        OnlyStreamOwner,
        StreamNotActive,
        StreamNotFound,
        UnauthorizedCaller,
        UnauthorizedSettlement,
        UnknownCustomerPlan,
        UnknownPlan,
        UsageExceedsPool
    );
    Some(format!("0x{}", hex::encode(selector)))
}

/// The fields of a `getTokenLock` answer the projections use, as JSON (amounts and times as
/// decimal strings). Only fields that never change after creation, so the value read at the
/// head equals the value at the creating block.
pub fn token_lock_json(lock: &TokenLock) -> Value {
    json!({
        "streamRate": lock.streamRate.to_string(),
        "startTime": lock.startTime.to_string(),
        "endTime": lock.endTime.to_string(),
        "streamType": lock.streamType,
        "usageCount": lock.usageCount.to_string(),
    })
}

/// How an event matters to an operator: admin events can change what other events mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    /// Streams, balances, producers: the business data.
    Domain,
    /// `Upgraded`, `Paused`, `Unpaused`, `OwnershipTransferred`, `Initialized`.
    Admin,
}

/// A successfully decoded log: its event name, class and fields as JSON (amounts as decimal strings).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedEvent {
    /// The Solidity event name, e.g. `StreamLockCreated`.
    pub name: &'static str,
    /// Domain or admin event.
    pub class: EventClass,
    /// The decoded fields, keyed by parameter name.
    pub fields: Value,
}

/// The outcome of decoding one raw log.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeOutcome {
    /// A known event, decoded.
    Decoded(DecodedEvent),
    /// No event of the ABI has this topic0 (or the log has no topics): stored raw and counted.
    Unknown,
    /// topic0 names a known event but the log does not decode as that event.
    Quarantined {
        /// The event the topic names.
        name: &'static str,
        /// Why decoding failed.
        reason: String,
    },
}

impl DecodeOutcome {
    /// The `event` metric label: the event name, or `unknown` / `quarantined`.
    pub fn label(&self) -> &'static str {
        match self {
            DecodeOutcome::Decoded(event) => event.name,
            DecodeOutcome::Unknown => "unknown",
            DecodeOutcome::Quarantined { .. } => "quarantined",
        }
    }
}

/// Every event name this module can decode, in a fixed order (used to initialise metric series).
pub const EVENT_NAMES: &[&str] = &[
    "StreamLockCreated",
    "StreamSettled",
    "PartialClaim",
    "ProducerBatchClaim",
    "EmergencyWithdraw",
    "CustomerPlanStreamCreated",
    "StreamUsageRecorded",
    "BalanceDeposited",
    "BalanceLocked",
    "BalanceUnlocked",
    "BalanceWithdrawn",
    "Paused",
    "Unpaused",
    "Upgraded",
    "Initialized",
    "OwnershipTransferred",
    "CustomerPlanWithStreamCreated",
    "StreamUsageValidated",
    "LogAddPlan",
    "LogProducer",
];

/// Every topic0 the indexer understands; used to rule blocks out by their `logsBloom`.
pub fn known_topics() -> Vec<B256> {
    vec![
        StreamLockCreated::SIGNATURE_HASH,
        StreamSettled::SIGNATURE_HASH,
        PartialClaim::SIGNATURE_HASH,
        ProducerBatchClaim::SIGNATURE_HASH,
        EmergencyWithdraw::SIGNATURE_HASH,
        CustomerPlanStreamCreated::SIGNATURE_HASH,
        StreamUsageRecorded::SIGNATURE_HASH,
        BalanceDeposited::SIGNATURE_HASH,
        BalanceLocked::SIGNATURE_HASH,
        BalanceUnlocked::SIGNATURE_HASH,
        BalanceWithdrawn::SIGNATURE_HASH,
        Paused::SIGNATURE_HASH,
        Unpaused::SIGNATURE_HASH,
        Upgraded::SIGNATURE_HASH,
        Initialized::SIGNATURE_HASH,
        OwnershipTransferred::SIGNATURE_HASH,
        CustomerPlanWithStreamCreated::SIGNATURE_HASH,
        StreamUsageValidated::SIGNATURE_HASH,
        LogAddPlan::SIGNATURE_HASH,
        LogProducer::SIGNATURE_HASH,
    ]
}

fn hex_addr(a: &Address) -> Value {
    Value::String(format!("{a:#x}"))
}

fn hex_b256(b: &B256) -> Value {
    Value::String(format!("{b:#x}"))
}

fn decode_as<E: SolEvent>(
    log: &PrimitiveLog,
    class: EventClass,
    fields: impl FnOnce(&E) -> Value,
) -> DecodeOutcome {
    let name: &'static str = event_name::<E>();
    // `validate = true` rejects data with trailing or malformed words instead of guessing.
    match E::decode_raw_log_validate(log.topics(), &log.data.data) {
        Ok(event) => DecodeOutcome::Decoded(DecodedEvent {
            name,
            class,
            fields: fields(&event),
        }),
        Err(err) => DecodeOutcome::Quarantined {
            name,
            reason: err.to_string(),
        },
    }
}

fn event_name<E: SolEvent>() -> &'static str {
    // SIGNATURE is e.g. "StreamSettled(bytes32,address,...)": the name is the part before '('.
    let signature = E::SIGNATURE;
    match signature.find('(') {
        Some(end) => &signature[..end],
        None => signature,
    }
}

/// Decodes one raw log of a watched address.
pub fn decode_log(log: &PrimitiveLog) -> DecodeOutcome {
    use EventClass::{Admin, Domain};
    let Some(topic0) = log.topics().first().copied() else {
        return DecodeOutcome::Unknown;
    };
    match topic0 {
        StreamLockCreated::SIGNATURE_HASH => decode_as::<StreamLockCreated>(log, Domain, |e| {
            json!({"lockId": hex_b256(&e.lockId), "user": hex_addr(&e.user), "recipient": hex_addr(&e.recipient),
                   "token": hex_addr(&e.token), "totalAmount": e.totalAmount.to_string(), "duration": e.duration.to_string()})
        }),
        StreamSettled::SIGNATURE_HASH => decode_as::<StreamSettled>(log, Domain, |e| {
            json!({"lockId": hex_b256(&e.lockId), "user": hex_addr(&e.user), "recipient": hex_addr(&e.recipient),
                   "settledAmount": e.settledAmount.to_string(), "returnedAmount": e.returnedAmount.to_string(),
                   "trigger": e.trigger})
        }),
        PartialClaim::SIGNATURE_HASH => decode_as::<PartialClaim>(
            log,
            Domain,
            |e| json!({"lockId": hex_b256(&e.lockId), "recipient": hex_addr(&e.recipient), "amount": e.amount.to_string()}),
        ),
        ProducerBatchClaim::SIGNATURE_HASH => decode_as::<ProducerBatchClaim>(log, Domain, |e| {
            json!({"producer": hex_addr(&e.producer), "totalClaimed": e.totalClaimed.to_string(),
                   "streamCount": e.streamCount.to_string()})
        }),
        EmergencyWithdraw::SIGNATURE_HASH => decode_as::<EmergencyWithdraw>(
            log,
            Domain,
            |e| json!({"lockId": hex_b256(&e.lockId), "user": hex_addr(&e.user), "amount": e.amount.to_string()}),
        ),
        CustomerPlanStreamCreated::SIGNATURE_HASH => {
            decode_as::<CustomerPlanStreamCreated>(log, Domain, |e| {
                json!({"customerPlanId": e.customerPlanId.to_string(), "lockId": hex_b256(&e.lockId),
                       "customer": hex_addr(&e.customer), "producer": hex_addr(&e.producer)})
            })
        }
        StreamUsageRecorded::SIGNATURE_HASH => decode_as::<StreamUsageRecorded>(log, Domain, |e| {
            json!({"lockId": hex_b256(&e.lockId), "usageAmount": e.usageAmount.to_string(),
                   "accruedAmount": e.accruedAmount.to_string(), "timestamp": e.timestamp.to_string()})
        }),
        BalanceDeposited::SIGNATURE_HASH => decode_as::<BalanceDeposited>(log, Domain, |e| {
            balance_fields(&e.user, &e.token, &e.amount)
        }),
        BalanceLocked::SIGNATURE_HASH => decode_as::<BalanceLocked>(log, Domain, |e| {
            balance_fields(&e.user, &e.token, &e.amount)
        }),
        BalanceUnlocked::SIGNATURE_HASH => decode_as::<BalanceUnlocked>(log, Domain, |e| {
            balance_fields(&e.user, &e.token, &e.amount)
        }),
        BalanceWithdrawn::SIGNATURE_HASH => decode_as::<BalanceWithdrawn>(log, Domain, |e| {
            balance_fields(&e.user, &e.token, &e.amount)
        }),
        Paused::SIGNATURE_HASH => {
            decode_as::<Paused>(log, Admin, |e| json!({"account": hex_addr(&e.account)}))
        }
        Unpaused::SIGNATURE_HASH => {
            decode_as::<Unpaused>(log, Admin, |e| json!({"account": hex_addr(&e.account)}))
        }
        Upgraded::SIGNATURE_HASH => decode_as::<Upgraded>(
            log,
            Admin,
            |e| json!({"implementation": hex_addr(&e.implementation)}),
        ),
        Initialized::SIGNATURE_HASH => {
            decode_as::<Initialized>(log, Admin, |e| json!({"version": e.version.to_string()}))
        }
        OwnershipTransferred::SIGNATURE_HASH => decode_as::<OwnershipTransferred>(
            log,
            Admin,
            |e| json!({"previousOwner": hex_addr(&e.previousOwner), "newOwner": hex_addr(&e.newOwner)}),
        ),
        CustomerPlanWithStreamCreated::SIGNATURE_HASH => {
            decode_as::<CustomerPlanWithStreamCreated>(log, Domain, |e| {
                json!({"customerPlanId": e.customerPlanId.to_string(), "streamLockId": hex_b256(&e.streamLockId),
                       "customer": hex_addr(&e.customer)})
            })
        }
        StreamUsageValidated::SIGNATURE_HASH => {
            decode_as::<StreamUsageValidated>(log, Domain, |e| {
                json!({"customerPlanId": e.customerPlanId.to_string(), "streamLockId": hex_b256(&e.streamLockId),
                       "customer": hex_addr(&e.customer), "canUse": e.canUse})
            })
        }
        LogAddPlan::SIGNATURE_HASH => decode_as::<LogAddPlan>(log, Domain, |e| {
            json!({"planId": e.planId.to_string(), "producerAddress": hex_addr(&e.producerAddress),
                   "name": e.name, "planType": e.planType})
        }),
        LogProducer::SIGNATURE_HASH => decode_as::<LogProducer>(log, Domain, |e| {
            json!({"producerAddress": hex_addr(&e.producerAddress), "name": e.name,
                   "producerId": e.producerId.to_string(), "cloneAddress": hex_addr(&e.cloneAddress)})
        }),
        _ => DecodeOutcome::Unknown,
    }
}

fn balance_fields(user: &Address, token: &Address, amount: &alloy::primitives::U256) -> Value {
    json!({"user": hex_addr(user), "token": hex_addr(token), "amount": amount.to_string()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{address, b256, Bytes, LogData, U256};

    #[test]
    fn topic0_values_match_the_reference() {
        assert_eq!(
            StreamLockCreated::SIGNATURE_HASH,
            b256!("11a590d593e125b56eb12d8a297e3fdefb15812688887ef864fd31f249a8f347")
        );
        assert_eq!(
            StreamSettled::SIGNATURE_HASH,
            b256!("b7a122c91f16fa654638c387f6ca3e0fc3f3761636f3d160594daef31b9f21c3")
        );
        assert_eq!(
            PartialClaim::SIGNATURE_HASH,
            b256!("9e8ceb6f00b73351f43a9236a5a2bde0a6964dc4c84e45015910e4520ab6a754")
        );
        assert_eq!(
            ProducerBatchClaim::SIGNATURE_HASH,
            b256!("16497129e5be21b97f674901180c561ee1fcb7a099b6bc866b6768dd06da85b8")
        );
        assert_eq!(
            EmergencyWithdraw::SIGNATURE_HASH,
            b256!("d3e69353709a7dcaab28b44353b592c552cd797c95ffb523f924c0a16b4a2c2b")
        );
        assert_eq!(
            CustomerPlanStreamCreated::SIGNATURE_HASH,
            b256!("6f7f86026a2db29034a936afdeca9a9560933c6bcde586afaa025210eff99c96")
        );
        assert_eq!(
            StreamUsageRecorded::SIGNATURE_HASH,
            b256!("874a913310c7a36664faf7058f78914ce14858fe66f54068b90451728a7e660b")
        );
        assert_eq!(
            BalanceDeposited::SIGNATURE_HASH,
            b256!("854a1caa46a67abd91fff206c0a8a45f6fdc9f7cb7fcfb8ef5646daaa7f1574c")
        );
        assert_eq!(
            BalanceLocked::SIGNATURE_HASH,
            b256!("d328a1e0b5bc70925c677287d5714db1f3b24cfd146eb3250d9c389fcfb45f23")
        );
        assert_eq!(
            BalanceUnlocked::SIGNATURE_HASH,
            b256!("e58e3512db5b7a297b8feda2d4e82f76491b0cedbd0115e27f14ba79aadb3796")
        );
        assert_eq!(
            BalanceWithdrawn::SIGNATURE_HASH,
            b256!("50630162af2fe1b3638257703351230fbe331ec0b7368aba0eb78f2dabd03c0c")
        );
        assert_eq!(
            LogProducer::SIGNATURE_HASH,
            b256!("5721aa54391c71aa6f35790186337ff5a1a095b790624060465364d5d431b52f")
        );
        assert!(format!("{:#x}", Paused::SIGNATURE_HASH).starts_with("0x62e78cea"));
        assert!(format!("{:#x}", Unpaused::SIGNATURE_HASH).starts_with("0x5db9ee0a"));
        assert!(format!("{:#x}", Upgraded::SIGNATURE_HASH).starts_with("0xbc7cd75a"));
        assert!(
            format!("{:#x}", CustomerPlanWithStreamCreated::SIGNATURE_HASH)
                .starts_with("0xb066f251")
        );
        assert_eq!(known_topics().len(), EVENT_NAMES.len());
    }

    fn raw(topics: Vec<B256>, data: Vec<u8>) -> PrimitiveLog {
        PrimitiveLog {
            address: address!("00000000000000000000000000000000000000aa"),
            data: LogData::new_unchecked(topics, Bytes::from(data)),
        }
    }

    #[test]
    fn decodes_a_balance_event_and_names_its_fields() {
        let user = address!("1111111111111111111111111111111111111111");
        let token = address!("2222222222222222222222222222222222222222");
        let log = raw(
            vec![
                BalanceDeposited::SIGNATURE_HASH,
                user.into_word(),
                token.into_word(),
            ],
            U256::from(500u64).to_be_bytes::<32>().to_vec(),
        );
        let DecodeOutcome::Decoded(event) = decode_log(&log) else {
            panic!("expected a decoded event")
        };
        assert_eq!(event.name, "BalanceDeposited");
        assert_eq!(event.class, EventClass::Domain);
        assert_eq!(event.fields["amount"], "500");
        assert_eq!(event.fields["user"], format!("{user:#x}"));
    }

    #[test]
    fn unknown_topic_is_not_dropped_but_reported_unknown() {
        let log = raw(vec![B256::repeat_byte(7)], vec![]);
        assert_eq!(decode_log(&log), DecodeOutcome::Unknown);
        assert_eq!(decode_log(&raw(vec![], vec![])), DecodeOutcome::Unknown);
    }

    #[test]
    fn known_topic_with_bad_data_is_quarantined() {
        // BalanceDeposited needs two indexed topics and one data word: give it neither.
        let log = raw(vec![BalanceDeposited::SIGNATURE_HASH], vec![1, 2, 3]);
        match decode_log(&log) {
            DecodeOutcome::Quarantined { name, reason } => {
                assert_eq!(name, "BalanceDeposited");
                assert!(!reason.is_empty());
            }
            other => panic!("expected quarantine, got {other:?}"),
        }
    }
}
