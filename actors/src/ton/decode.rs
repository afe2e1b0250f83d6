//! Decoding TON transaction BoCs into [`TonTransaction`].
//!
//! The TL-B parsing is the `ton` crate's (`block_tlb::Tx`, `Msg`, `TxDescr` and the TEP-74 jetton
//! message types); this module maps its types onto chainsync's own and gives them one JSON form,
//! the one of the fixtures in `tests/fixtures/ton`: coins and logical times as decimal strings,
//! addresses as raw `wc:hex` (`ext:<bits>:<hex>` for `addr_extern`, `null` for `addr_none`), `op`
//! as `0x%08x`, hashes as lowercase hex.
//!
//! Written here because the crate lacks it:
//! - message hashes come from the original message cells, not from a re-encoding (a re-encoding
//!   may lay the body out differently, and then the hash is not the one on chain);
//! - text comments: op 0 followed by a snake string that must be whole bytes of valid UTF-8 (the
//!   crate's `SnakeData` reads the bytes; its `as_str` would replace invalid UTF-8);
//! - the TEP-467 normalised hash leaves the destination as it is (the crate's
//!   `Msg::cell_hash_normalized` also drops an anycast, which TEP-467 does not ask for);
//! - `transfer_notification` is read with `sender: MsgAddress` as TEP-74 defines it (the crate's
//!   `JettonTransferNotificationMsg` reads a `TonAddress`, turning `addr_none` into `0:000…0`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use ton::block_tlb::{
    AccStatusChange, AccountStatus, CommonMsgInfo, CommonMsgInfoExtIn, CurrencyCollection, Msg,
    StorageUsedShort, TrActionPhase, TrBouncePhase, TrComputePhase, TrCreditPhase, TrStoragePhase,
    Tx, TxComputeSkipReason, TxDescr,
};
use ton::contracts::tep::excesses_msg::ExcessesMsg;
use ton::contracts::tep::jetton::jetton_internal_transfer_msg::JettonInternalTransferMsg;
use ton::contracts::tep::jetton::jetton_transfer_msg::JettonTransferMsg;
use ton::contracts::tep::snake_data::SnakeData;
use ton::tlb_adapters::{DictKeyAdapterUint, DictValAdapterTLB, TLBHashMapE};
use ton::ton_core::cell::{BoC, TonCell, TonHash};
use ton::ton_core::errors::TonCoreError;
use ton::ton_core::traits::tlb::TLB;
use ton::ton_core::types::tlb_core::{
    MsgAddress, MsgAddressExt, MsgAddressInt, TLBCoins, TLBEitherRef, TLBRef,
};
use ton::ton_core::TLB;

/// Result alias of TON decoding.
pub type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// Op code of a text comment (the body is op 0 followed by a snake string).
pub const OP_COMMENT: u32 = 0;
/// Op code of a jetton `transfer` (TEP-74), sent by the owner to its jetton wallet.
pub const OP_JETTON_TRANSFER: u32 = 0x0f8a_7ea5;
/// Op code of a jetton `internal_transfer` (TEP-74), between jetton wallets.
pub const OP_JETTON_INTERNAL_TRANSFER: u32 = 0x178d_4519;
/// Op code of a jetton `transfer_notification` (TEP-74), to the receiving owner.
pub const OP_JETTON_TRANSFER_NOTIFICATION: u32 = 0x7362_d09c;
/// Op code of `excesses` (TEP-74), the TON left over returned to the response address.
pub const OP_EXCESSES: u32 = 0xd532_76db;

/// Why a transaction BoC could not be decoded. Decoding is deterministic: no error is retryable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is not a bag of cells with exactly one root.
    #[error(
        "transaction BoC ({encoding}, {len} bytes) is not a bag of cells with one root: {source}"
    )]
    Boc {
        /// `binary` or `base64`.
        encoding: &'static str,
        /// Length of the input.
        len: usize,
        /// The parser's error.
        #[source]
        source: TonCoreError,
    },
    /// A part of the transaction does not parse as its TL-B type.
    #[error("transaction {tx_hash}: cannot read {part}: {source}")]
    Tlb {
        /// Hex hash of the transaction's root cell.
        tx_hash: String,
        /// The part that failed, e.g. `Transaction`, `description`, `out_msgs[1]`.
        part: String,
        /// The parser's error.
        #[source]
        source: TonCoreError,
    },
    /// A part of the transaction uses a TL-B variant this decoder does not map.
    #[error(
        "transaction {tx_hash}: {part} uses a {type_name} variant this decoder does not handle"
    )]
    Unsupported {
        /// Hex hash of the transaction's root cell.
        tx_hash: String,
        /// The part concerned.
        part: String,
        /// The TL-B type whose variant is unknown.
        type_name: &'static str,
    },
    /// [`normalized_external_hash`] was given a message that is not external-in.
    #[error("the normalised hash (TEP-467) is defined for external-in messages, not for {kind} messages")]
    NotExternalIn {
        /// The kind of message given.
        kind: &'static str,
    },
    /// Building the normalised (TEP-467) cell of an external-in message failed.
    #[error(
        "cannot build the normalised (TEP-467) cell of an external-in message to {dest}: {source}"
    )]
    Normalize {
        /// Destination of the message.
        dest: String,
        /// The builder's error.
        #[source]
        source: TonCoreError,
    },
}

impl DecodeError {
    /// A fixed label for metrics (never the error text).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Boc { .. } => "ton_boc",
            Self::Tlb { .. } => "ton_tlb",
            Self::Unsupported { .. } => "ton_unsupported",
            Self::NotExternalIn { .. } => "ton_not_external_in",
            Self::Normalize { .. } => "ton_normalize",
        }
    }

    /// Always `false`: the same bytes fail the same way every time.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The address of an account: workchain and 256-bit account id. Displays as raw `wc:hex`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TonAccount {
    /// Workchain id (`0` basechain, `-1` masterchain).
    pub workchain: i32,
    /// Account id.
    pub address: [u8; 32],
}

impl fmt::Display for TonAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.workchain, hex::encode(self.address))
    }
}

impl Serialize for TonAccount {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A message address other than `addr_none` (which decodes to `None`).
///
/// An anycast prefix (deprecated, not seen on mainnet) is dropped: the raw form identifies the
/// account without it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TonAddr {
    /// `addr_std`: an account.
    Std(TonAccount),
    /// `addr_var`: an account id of any length. Displays as `wc:hex` of its bytes.
    Var {
        /// Workchain id.
        workchain: i32,
        /// Length of the account id in bits.
        bits: u16,
        /// The account id, left-aligned, zero-padded to whole bytes.
        address: Vec<u8>,
    },
    /// `addr_extern`: an external address. Displays as `ext:<bits>:<hex value>`.
    Extern {
        /// Length in bits.
        bits: u16,
        /// The bits, left-aligned, zero-padded to whole bytes.
        address: Vec<u8>,
    },
}

impl TonAddr {
    /// The account, when this is an `addr_std` address.
    pub fn account(&self) -> Option<TonAccount> {
        match self {
            Self::Std(account) => Some(*account),
            _ => None,
        }
    }
}

impl fmt::Display for TonAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Std(account) => account.fmt(f),
            Self::Var {
                workchain, address, ..
            } => write!(f, "{workchain}:{}", hex::encode(address)),
            Self::Extern { bits, address } => {
                write!(f, "ext:{bits}:{}", bits_as_hex_number(address, *bits))
            }
        }
    }
}

impl Serialize for TonAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The first `bits` bits of `data` read as one unsigned big-endian number, in lowercase hex
/// without leading zeros (`0` when all are zero): how @ton/core prints an external address.
fn bits_as_hex_number(data: &[u8], bits: u16) -> String {
    let bits = usize::from(bits).min(data.len() * 8);
    let bit = |i: usize| (data[i / 8] >> (7 - i % 8)) & 1;
    // Pad on the left to whole nibbles, so that the number's value does not change.
    let pad = (4 - bits % 4) % 4;
    let nibbles = (0..(pad + bits) / 4).map(|n| {
        (0..4).fold(0u8, |acc, k| {
            let i = n * 4 + k;
            (acc << 1) | if i < pad { 0 } else { bit(i - pad) }
        })
    });
    let hex: String = nibbles
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
        .collect();
    match hex.trim_start_matches('0') {
        "" => "0".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

/// Account status before and after a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatusKind {
    /// Has a balance but no code.
    Uninit,
    /// Frozen for unpaid storage.
    Frozen,
    /// Has code and data.
    Active,
    /// Does not exist.
    NonExist,
}

/// How a phase changed the account's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusChange {
    /// Status kept.
    Unchanged,
    /// Account frozen.
    Frozen,
    /// Account deleted.
    Deleted,
}

/// Storage phase: storage fees collected from the account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoragePhase {
    /// Fees collected, in nanotons.
    #[serde(serialize_with = "json::decimal")]
    pub fees_collected: u128,
    /// Fees the account could not pay, in nanotons.
    #[serde(serialize_with = "json::opt_decimal")]
    pub fees_due: Option<u128>,
    /// Status change caused by the phase.
    pub status_change: StatusChange,
}

/// Credit phase: the inbound message's value credited to the account.
///
/// Extra currencies are not mapped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreditPhase {
    /// Storage fees due collected from the credit, in nanotons.
    #[serde(serialize_with = "json::opt_decimal")]
    pub due_fees_collected: Option<u128>,
    /// TON credited, in nanotons.
    #[serde(serialize_with = "json::decimal")]
    pub credit: u128,
}

/// Why the compute phase was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The account has no code and the message brought no state init.
    NoState,
    /// The state init brought does not match the address.
    BadState,
    /// Not enough value to buy gas.
    NoGas,
    /// The account is suspended.
    Suspended,
}

/// Compute phase: the TVM run, or why there was none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ComputePhase {
    /// The TVM did not run.
    Skipped {
        /// Why.
        #[serde(rename = "skip_reason")]
        reason: SkipReason,
    },
    /// The TVM ran.
    Vm {
        /// Whether the run succeeded (exit code 0 or 1).
        success: bool,
        /// Whether the state init of the message was used.
        msg_state_used: bool,
        /// Whether the account was activated by this run.
        account_activated: bool,
        /// Gas fees, in nanotons.
        #[serde(serialize_with = "json::decimal")]
        gas_fees: u128,
        /// Gas used.
        #[serde(serialize_with = "json::decimal")]
        gas_used: u64,
        /// Gas limit.
        #[serde(serialize_with = "json::decimal")]
        gas_limit: u64,
        /// Gas credit (external messages).
        #[serde(serialize_with = "json::opt_decimal")]
        gas_credit: Option<u64>,
        /// TVM mode.
        mode: i8,
        /// TVM exit code.
        exit_code: i32,
        /// TVM exit argument.
        exit_arg: Option<i32>,
        /// Number of TVM steps.
        vm_steps: u32,
    },
}

/// Action phase: the actions (outbound messages, reserves, code changes) the run produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActionPhase {
    /// Whether all actions were performed.
    pub success: bool,
    /// Whether the action list was valid.
    pub valid: bool,
    /// Whether the account ran out of funds.
    pub no_funds: bool,
    /// Status change caused by the phase.
    pub status_change: StatusChange,
    /// Forwarding fees, in nanotons.
    #[serde(serialize_with = "json::opt_decimal")]
    pub total_fwd_fees: Option<u128>,
    /// Action fees, in nanotons.
    #[serde(serialize_with = "json::opt_decimal")]
    pub total_action_fees: Option<u128>,
    /// Result code.
    pub result_code: i32,
    /// Result argument (the index of the failing action).
    pub result_arg: Option<i32>,
    /// Number of actions.
    pub tot_actions: u16,
    /// Number of special actions.
    pub spec_actions: u16,
    /// Number of skipped actions.
    pub skipped_actions: u16,
    /// Number of messages created.
    pub msgs_created: u16,
}

/// Size of a message, as the bounce phase accounts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MessageSize {
    /// Cells.
    #[serde(serialize_with = "json::decimal")]
    pub cells: u64,
    /// Bits.
    #[serde(serialize_with = "json::decimal")]
    pub bits: u64,
}

/// Bounce phase: whether a bounce message could be sent back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BouncePhase {
    /// Negative funds: no bounce.
    NegFunds,
    /// Not enough funds to pay for the bounce message.
    NoFunds {
        /// Size of the message that would have been sent.
        msg_size: MessageSize,
        /// Forwarding fee required, in nanotons.
        #[serde(serialize_with = "json::decimal")]
        req_fwd_fees: u128,
    },
    /// A bounce message was sent.
    Ok {
        /// Size of the bounce message.
        msg_size: MessageSize,
        /// Message fees, in nanotons.
        #[serde(serialize_with = "json::decimal")]
        msg_fees: u128,
        /// Forwarding fees, in nanotons.
        #[serde(serialize_with = "json::decimal")]
        fwd_fees: u128,
    },
}

/// The transaction description: its kind and phases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TxDescription {
    /// An ordinary transaction, processing one inbound message.
    Ord {
        /// Whether the credit phase ran before the storage phase.
        credit_first: bool,
        /// Whether the transaction was aborted.
        aborted: bool,
        /// Whether the account was destroyed.
        destroyed: bool,
        /// Storage phase.
        storage_phase: Option<StoragePhase>,
        /// Credit phase.
        credit_phase: Option<CreditPhase>,
        /// Compute phase.
        compute_phase: ComputePhase,
        /// Action phase.
        action_phase: Option<ActionPhase>,
        /// Bounce phase.
        bounce_phase: Option<BouncePhase>,
    },
    /// A storage-only transaction.
    Storage {
        /// Storage phase.
        storage_phase: StoragePhase,
    },
    /// A tick or tock transaction of a special masterchain account (no inbound message).
    TickTock {
        /// `true` for tock, `false` for tick.
        is_tock: bool,
        /// Whether the transaction was aborted.
        aborted: bool,
        /// Whether the account was destroyed.
        destroyed: bool,
        /// Storage phase.
        storage_phase: StoragePhase,
        /// Compute phase.
        compute_phase: ComputePhase,
        /// Action phase.
        action_phase: Option<ActionPhase>,
    },
    /// Split preparation.
    SplitPrepare {
        /// Whether the transaction was aborted.
        aborted: bool,
        /// Whether the account was destroyed.
        destroyed: bool,
        /// Storage phase.
        storage_phase: Option<StoragePhase>,
        /// Compute phase.
        compute_phase: ComputePhase,
        /// Action phase.
        action_phase: Option<ActionPhase>,
    },
    /// Split installation.
    SplitInstall {
        /// Whether the split was installed.
        installed: bool,
    },
    /// Merge preparation.
    MergePrepare {
        /// Whether the transaction was aborted.
        aborted: bool,
        /// Storage phase.
        storage_phase: StoragePhase,
    },
    /// Merge installation.
    MergeInstall {
        /// Whether the transaction was aborted.
        aborted: bool,
        /// Whether the account was destroyed.
        destroyed: bool,
        /// Storage phase.
        storage_phase: Option<StoragePhase>,
        /// Credit phase.
        credit_phase: Option<CreditPhase>,
        /// Compute phase.
        compute_phase: ComputePhase,
        /// Action phase.
        action_phase: Option<ActionPhase>,
    },
}

impl TxDescription {
    /// Whether the transaction was aborted (`false` for kinds without the flag).
    pub fn aborted(&self) -> bool {
        match self {
            Self::Ord { aborted, .. }
            | Self::TickTock { aborted, .. }
            | Self::SplitPrepare { aborted, .. }
            | Self::MergePrepare { aborted, .. }
            | Self::MergeInstall { aborted, .. } => *aborted,
            Self::Storage { .. } | Self::SplitInstall { .. } => false,
        }
    }

    /// The compute phase, for kinds that have one.
    pub fn compute(&self) -> Option<&ComputePhase> {
        match self {
            Self::Ord { compute_phase, .. }
            | Self::TickTock { compute_phase, .. }
            | Self::SplitPrepare { compute_phase, .. }
            | Self::MergeInstall { compute_phase, .. } => Some(compute_phase),
            Self::Storage { .. } | Self::SplitInstall { .. } | Self::MergePrepare { .. } => None,
        }
    }

    /// The action phase, when there was one.
    pub fn action(&self) -> Option<&ActionPhase> {
        match self {
            Self::Ord { action_phase, .. }
            | Self::TickTock { action_phase, .. }
            | Self::SplitPrepare { action_phase, .. }
            | Self::MergeInstall { action_phase, .. } => action_phase.as_ref(),
            Self::Storage { .. } | Self::SplitInstall { .. } | Self::MergePrepare { .. } => None,
        }
    }

    /// The bounce phase (ordinary transactions only).
    pub fn bounce(&self) -> Option<&BouncePhase> {
        match self {
            Self::Ord { bounce_phase, .. } => bounce_phase.as_ref(),
            _ => None,
        }
    }
}

/// The kind of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Between accounts (`int_msg_info`).
    Internal,
    /// From outside the blockchain into an account (`ext_in_msg_info`).
    ExternalIn,
    /// From an account to outside (`ext_out_msg_info`, logs and events).
    ExternalOut,
}

impl MessageKind {
    /// The name used in JSON: `internal`, `external-in`, `external-out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::ExternalIn => "external-in",
            Self::ExternalOut => "external-out",
        }
    }
}

/// A decoded jetton message body (TEP-74). JSON: tagged by `op`, amounts as decimal strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum JettonBody {
    /// `transfer` (op `0x0f8a7ea5`): an owner asks its jetton wallet to send jettons.
    Transfer {
        /// Query id chosen by the sender.
        #[serde(serialize_with = "json::decimal")]
        query_id: u64,
        /// Jettons, in elementary units.
        #[serde(serialize_with = "json::decimal")]
        amount: u128,
        /// The new owner.
        destination: Option<TonAddr>,
        /// Where the confirmation and the excess TON go.
        response_destination: Option<TonAddr>,
        /// TON forwarded to the new owner with the notification, in nanotons.
        #[serde(serialize_with = "json::decimal")]
        forward_ton_amount: u128,
    },
    /// `internal_transfer` (op `0x178d4519`): between jetton wallets; what credits the receiver.
    InternalTransfer {
        /// Query id of the transfer.
        #[serde(serialize_with = "json::decimal")]
        query_id: u64,
        /// Jettons, in elementary units.
        #[serde(serialize_with = "json::decimal")]
        amount: u128,
        /// The previous owner.
        from: Option<TonAddr>,
        /// Where the excess TON go.
        response_address: Option<TonAddr>,
        /// TON to forward to the new owner with the notification, in nanotons.
        #[serde(serialize_with = "json::decimal")]
        forward_ton_amount: u128,
    },
    /// `transfer_notification` (op `0x7362d09c`): to the new owner, only when TON was forwarded.
    TransferNotification {
        /// Query id of the transfer.
        #[serde(serialize_with = "json::decimal")]
        query_id: u64,
        /// Jettons, in elementary units.
        #[serde(serialize_with = "json::decimal")]
        amount: u128,
        /// The previous owner.
        sender: Option<TonAddr>,
        /// Text comment of the forward payload (op 0 + text, inline or in a reference).
        #[serde(skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// `excesses` (op `0xd53276db`): the TON left over, back to the response address.
    Excesses {
        /// Query id of the transfer.
        #[serde(serialize_with = "json::decimal")]
        query_id: u64,
    },
}

/// TEP-74 `transfer_notification`, read with the `MsgAddress` sender the standard defines.
#[derive(Clone, Debug, TLB)]
#[tlb(prefix = 0x7362d09c, bits_len = 32, ensure_empty = true)]
struct TransferNotificationBody {
    query_id: u64,
    amount: TLBCoins,
    sender: MsgAddress,
    forward_payload: TLBEitherRef<TonCell>,
}

impl JettonBody {
    /// Reads a jetton body by its op; `None` when the op is not one of the four or the body does
    /// not parse as its op (anyone can send any bytes with a jetton op).
    pub fn parse(body: &TonCell) -> Option<Self> {
        let op: u32 = body.parser().read_num(32).ok()?;
        match op {
            OP_JETTON_TRANSFER => {
                let msg = JettonTransferMsg::<TonCell, TonCell>::from_cell(body).ok()?;
                Some(Self::Transfer {
                    query_id: msg.query_id,
                    amount: msg.amount.to_u128(),
                    destination: addr(&msg.dst).ok()?,
                    response_destination: addr(&msg.response_dst).ok()?,
                    forward_ton_amount: msg.forward_ton_amount.to_u128(),
                })
            }
            OP_JETTON_INTERNAL_TRANSFER => {
                let msg = JettonInternalTransferMsg::<TonCell>::from_cell(body).ok()?;
                Some(Self::InternalTransfer {
                    query_id: msg.query_id,
                    amount: msg.amount.to_u128(),
                    from: addr(&msg.from_address).ok()?,
                    response_address: addr(&msg.response_address).ok()?,
                    forward_ton_amount: msg.forward_amount.to_u128(),
                })
            }
            OP_JETTON_TRANSFER_NOTIFICATION => {
                let msg = TransferNotificationBody::from_cell(body).ok()?;
                Some(Self::TransferNotification {
                    query_id: msg.query_id,
                    amount: msg.amount.to_u128(),
                    sender: addr(&msg.sender).ok()?,
                    comment: comment_of(&msg.forward_payload.value),
                })
            }
            OP_EXCESSES => {
                let msg = ExcessesMsg::from_cell(body).ok()?;
                Some(Self::Excesses {
                    query_id: msg.query_id,
                })
            }
            _ => None,
        }
    }
}

/// Reads a text comment: op 0 followed by a snake string (continuing in the first reference of
/// each cell) of whole bytes of valid UTF-8. `None` for anything else.
pub fn comment_of(cell: &TonCell) -> Option<String> {
    let mut parser = cell.parser();
    let op: u32 = parser.read_num(32).ok()?;
    if op != OP_COMMENT {
        return None;
    }
    let text = SnakeData::read(&mut parser).ok()?;
    if text.chunks_bits_len.iter().sum::<usize>() % 8 != 0 {
        return None;
    }
    String::from_utf8(text.data).ok()
}

/// A decoded message.
///
/// Fields that a kind does not have keep their zero value (`value` of an external message is 0)
/// and are left out of its JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TonMessage {
    /// Internal, external-in or external-out.
    pub kind: MessageKind,
    /// Hash of the message cell as it is stored in the transaction.
    pub hash: [u8; 32],
    /// TEP-467 normalised hash; external-in messages only (see [`normalized_external_hash`]).
    pub normalized_hash: Option<[u8; 32]>,
    /// Source; `None` for `addr_none`.
    pub src: Option<TonAddr>,
    /// Destination; `None` for `addr_none`.
    pub dest: Option<TonAddr>,
    /// TON carried, in nanotons (internal).
    pub value: u128,
    /// Extra currencies carried: id → decimal amount (internal). JSON gives only their number.
    pub extra_currencies: BTreeMap<u32, String>,
    /// Instant hypercube routing disabled (internal).
    pub ihr_disabled: bool,
    /// Whether the message bounces back on failure (internal).
    pub bounce: bool,
    /// Whether this is a bounced message (internal).
    pub bounced: bool,
    /// Forwarding fee, in nanotons (internal).
    pub fwd_fee: u128,
    /// IHR fee, in nanotons (internal).
    pub ihr_fee: u128,
    /// Import fee, in nanotons (external-in).
    pub import_fee: u128,
    /// Logical time of creation (internal, external-out).
    pub created_lt: u64,
    /// Unix time of creation (internal, external-out).
    pub created_at: u32,
    /// Whether the message carries a state init.
    pub has_state_init: bool,
    /// Bits of the body cell.
    pub body_bits: u16,
    /// References of the body cell.
    pub body_refs: u8,
    /// First 32 bits of the body, when it has them.
    pub op: Option<u32>,
    /// Text comment (op 0 and valid UTF-8 snake text).
    pub comment: Option<String>,
    /// Jetton body, for internal messages with a jetton op that parse as it.
    pub jetton: Option<JettonBody>,
}

impl Serialize for TonMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", self.kind.as_str())?;
        map.serialize_entry("hash", &hex::encode(self.hash))?;
        map.serialize_entry("src", &self.src)?;
        map.serialize_entry("dest", &self.dest)?;
        match self.kind {
            MessageKind::Internal => {
                map.serialize_entry("value", &self.value.to_string())?;
                map.serialize_entry("extra_currencies", &self.extra_currencies.len())?;
                map.serialize_entry("ihr_disabled", &self.ihr_disabled)?;
                map.serialize_entry("bounce", &self.bounce)?;
                map.serialize_entry("bounced", &self.bounced)?;
                map.serialize_entry("fwd_fee", &self.fwd_fee.to_string())?;
                map.serialize_entry("ihr_fee", &self.ihr_fee.to_string())?;
                map.serialize_entry("created_lt", &self.created_lt.to_string())?;
                map.serialize_entry("created_at", &self.created_at)?;
            }
            MessageKind::ExternalIn => {
                map.serialize_entry("import_fee", &self.import_fee.to_string())?;
            }
            MessageKind::ExternalOut => {
                map.serialize_entry("created_lt", &self.created_lt.to_string())?;
                map.serialize_entry("created_at", &self.created_at)?;
            }
        }
        map.serialize_entry("has_state_init", &self.has_state_init)?;
        map.serialize_entry("body_bits", &self.body_bits)?;
        map.serialize_entry("body_refs", &self.body_refs)?;
        if let Some(op) = self.op {
            map.serialize_entry("op", &format!("0x{op:08x}"))?;
        }
        if let Some(comment) = &self.comment {
            map.serialize_entry("comment", comment)?;
        }
        if let Some(jetton) = &self.jetton {
            map.serialize_entry("jetton", jetton)?;
        }
        if let Some(normalized_hash) = &self.normalized_hash {
            map.serialize_entry("normalized_hash", &hex::encode(normalized_hash))?;
        }
        map.end()
    }
}

/// A decoded transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TonTransaction {
    /// The account (the workchain is the caller's: a transaction stores only the account id).
    pub account: TonAccount,
    /// Hash of the transaction's root cell.
    pub hash: [u8; 32],
    /// Logical time.
    pub lt: u64,
    /// Logical time of the account's previous transaction (0 for its first).
    pub prev_lt: u64,
    /// Hash of the account's previous transaction (zeros for its first).
    pub prev_hash: [u8; 32],
    /// Unix time.
    pub now: u32,
    /// Number of outbound messages.
    pub out_msg_count: u16,
    /// Account status before.
    pub orig_status: AccountStatusKind,
    /// Account status after.
    pub end_status: AccountStatusKind,
    /// Total fees, in nanotons (extra currencies are not mapped).
    pub total_fees: u128,
    /// Hash of the account state before.
    pub state_update_old_hash: [u8; 32],
    /// Hash of the account state after.
    pub state_update_new_hash: [u8; 32],
    /// Kind and phases.
    pub description: TxDescription,
    /// Inbound message (none for tick-tock and some system transactions).
    pub in_msg: Option<TonMessage>,
    /// Outbound messages, in creation order.
    pub out_msgs: Vec<TonMessage>,
}

impl TonTransaction {
    /// Whether the transaction was aborted. An aborted transaction did not always return the
    /// funds: a non-bounceable transfer to an uninitialised account is aborted and credited.
    pub fn aborted(&self) -> bool {
        self.description.aborted()
    }

    /// The compute phase, for kinds that have one.
    pub fn compute(&self) -> Option<&ComputePhase> {
        self.description.compute()
    }

    /// Whether the action phase succeeded; `None` when there was no action phase.
    pub fn action_success(&self) -> Option<bool> {
        self.description.action().map(|action| action.success)
    }

    /// The bounce phase, when there was one.
    pub fn bounce(&self) -> Option<&BouncePhase> {
        self.description.bounce()
    }
}

impl Serialize for TonTransaction {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(16))?;
        map.serialize_entry("account", &self.account)?;
        map.serialize_entry("account_addr_hex", &hex::encode(self.account.address))?;
        map.serialize_entry("hash", &hex::encode(self.hash))?;
        map.serialize_entry("lt", &self.lt.to_string())?;
        map.serialize_entry("prev_trans_lt", &self.prev_lt.to_string())?;
        map.serialize_entry("prev_trans_hash", &hex::encode(self.prev_hash))?;
        map.serialize_entry("now", &self.now)?;
        map.serialize_entry("outmsg_cnt", &self.out_msg_count)?;
        map.serialize_entry("orig_status", &self.orig_status)?;
        map.serialize_entry("end_status", &self.end_status)?;
        map.serialize_entry("total_fees", &self.total_fees.to_string())?;
        map.serialize_entry(
            "state_update_old_hash",
            &hex::encode(self.state_update_old_hash),
        )?;
        map.serialize_entry(
            "state_update_new_hash",
            &hex::encode(self.state_update_new_hash),
        )?;
        map.serialize_entry("description", &self.description)?;
        map.serialize_entry("in_msg", &self.in_msg)?;
        map.serialize_entry("out_msgs", &self.out_msgs)?;
        map.end()
    }
}

/// Decodes a transaction from a single-root BoC. `workchain` is the account's, known to the
/// caller (a transaction stores only the 256-bit account id).
pub fn decode_transaction(boc: &[u8], workchain: i32) -> Result<TonTransaction> {
    let root = BoC::from_bytes(boc.to_vec())
        .and_then(BoC::single_root)
        .map_err(|source| DecodeError::Boc {
            encoding: "binary",
            len: boc.len(),
            source,
        })?;
    decode_transaction_cell(&root, workchain)
}

/// [`decode_transaction`] for a base64 BoC (toncenter's and the fixtures' form).
pub fn decode_transaction_base64(boc: &str, workchain: i32) -> Result<TonTransaction> {
    let root = BoC::from_base64(boc)
        .and_then(BoC::single_root)
        .map_err(|source| DecodeError::Boc {
            encoding: "base64",
            len: boc.len(),
            source,
        })?;
    decode_transaction_cell(&root, workchain)
}

/// Decodes the transaction whose root cell is `root`: a BoC answering `getTransactions` holds one
/// root per transaction.
pub fn decode_transaction_cell(root: &TonCell, workchain: i32) -> Result<TonTransaction> {
    let hash = cell_hash(root).map_err(|source| DecodeError::Tlb {
        tx_hash: "(root hash unavailable)".to_owned(),
        part: "root cell hash".to_owned(),
        source,
    })?;
    let ctx = Context {
        tx_hash: hex::encode(hash),
    };
    let tx = Tx::from_cell(root).map_err(ctx.tlb("Transaction"))?;
    let description = ctx.description(&tx.descr)?;
    let (in_cell, out_cells) = ctx.message_cells(root)?;
    let in_msg = in_cell
        .map(|cell| ctx.message(&cell, "in_msg"))
        .transpose()?;
    let out_msgs = out_cells
        .iter()
        .enumerate()
        .map(|(index, cell)| ctx.message(cell, &format!("out_msgs[{index}]")))
        .collect::<Result<Vec<_>>>()?;
    Ok(TonTransaction {
        account: TonAccount {
            workchain,
            address: *tx.account_addr.as_slice_sized(),
        },
        hash,
        lt: tx.lt,
        prev_lt: tx.prev_tx_lt,
        prev_hash: *tx.prev_tx_hash.as_slice_sized(),
        now: tx.now,
        out_msg_count: tx.out_msgs_cnt,
        orig_status: ctx.status(&tx.orig_status, "orig_status")?,
        end_status: ctx.status(&tx.end_status, "end_status")?,
        total_fees: tx.total_fees.coins.to_u128(),
        state_update_old_hash: *tx.state_update.old.as_slice_sized(),
        state_update_new_hash: *tx.state_update.new.as_slice_sized(),
        description,
        in_msg,
        out_msgs,
    })
}

/// TEP-467 normalised hash of an external-in message: the hash of the message re-encoded with
/// `src = addr_none`, `import_fee = 0`, no state init and the body in a reference. The
/// destination is kept as it is. Stable however a relay re-packed the message, so it matches
/// the message a backend sent.
pub fn normalized_external_hash(msg: &Msg) -> Result<[u8; 32]> {
    let CommonMsgInfo::ExtIn(info) = &msg.info else {
        return Err(DecodeError::NotExternalIn {
            kind: info_kind_name(&msg.info),
        });
    };
    let normalized = Msg {
        info: CommonMsgInfo::ExtIn(CommonMsgInfoExtIn {
            src: MsgAddressExt::NONE,
            dst: info.dst.clone(),
            import_fee: TLBCoins::ZERO,
        }),
        init: None,
        body: TLBEitherRef::new_ref(msg.body.value.clone()),
    };
    normalized
        .cell_hash()
        .map(|hash| *hash.as_slice_sized())
        .map_err(|source| DecodeError::Normalize {
            dest: int_addr(&info.dst)
                .map_or_else(|_| format!("{:?}", info.dst), |addr| addr.to_string()),
            source,
        })
}

fn info_kind_name(info: &CommonMsgInfo) -> &'static str {
    match info {
        CommonMsgInfo::Int(_) => MessageKind::Internal.as_str(),
        CommonMsgInfo::ExtIn(_) => MessageKind::ExternalIn.as_str(),
        CommonMsgInfo::ExtOut(_) => MessageKind::ExternalOut.as_str(),
        _ => "unknown",
    }
}

fn cell_hash(cell: &TonCell) -> std::result::Result<[u8; 32], TonCoreError> {
    cell.hash().map(|hash: &TonHash| *hash.as_slice_sized())
}

/// A `TonCoreError`-or-unknown-variant failure inside one part; [`Context`] names the part.
enum PartError {
    Tlb(TonCoreError),
    Unsupported(&'static str),
}

impl From<TonCoreError> for PartError {
    fn from(source: TonCoreError) -> Self {
        Self::Tlb(source)
    }
}

fn addr(address: &MsgAddress) -> std::result::Result<Option<TonAddr>, PartError> {
    match address {
        MsgAddress::Int(int) => int_addr(int).map(Some),
        MsgAddress::Ext(ext) => ext_addr(ext),
        _ => Err(PartError::Unsupported("MsgAddress")),
    }
}

fn int_addr(address: &MsgAddressInt) -> std::result::Result<TonAddr, PartError> {
    match address {
        MsgAddressInt::Std(std) => Ok(TonAddr::Std(TonAccount {
            workchain: i32::from(std.workchain),
            address: *std.address.as_slice_sized(),
        })),
        MsgAddressInt::Var(var) => Ok(TonAddr::Var {
            workchain: var.workchain,
            bits: u16::try_from(var.addr_bits_len)
                .map_err(|_| PartError::Unsupported("MsgAddressInt"))?,
            address: var.address.clone(),
        }),
        _ => Err(PartError::Unsupported("MsgAddressInt")),
    }
}

fn ext_addr(address: &MsgAddressExt) -> std::result::Result<Option<TonAddr>, PartError> {
    match address {
        MsgAddressExt::None(_) => Ok(None),
        MsgAddressExt::Extern(ext) => Ok(Some(TonAddr::Extern {
            bits: u16::try_from(ext.address.bits_len)
                .map_err(|_| PartError::Unsupported("MsgAddressExt"))?,
            address: ext.address.data.clone(),
        })),
        _ => Err(PartError::Unsupported("MsgAddressExt")),
    }
}

fn extra_currencies(value: &CurrencyCollection) -> BTreeMap<u32, String> {
    value
        .other
        .iter()
        .map(|(id, amount)| (**id, amount.data.to_string()))
        .collect()
}

fn status_change(change: &AccStatusChange) -> std::result::Result<StatusChange, PartError> {
    match change {
        AccStatusChange::Unchanged(_) => Ok(StatusChange::Unchanged),
        AccStatusChange::Frozen(_) => Ok(StatusChange::Frozen),
        AccStatusChange::Deleted(_) => Ok(StatusChange::Deleted),
        _ => Err(PartError::Unsupported("AccStatusChange")),
    }
}

fn storage_phase(phase: &TrStoragePhase) -> std::result::Result<StoragePhase, PartError> {
    Ok(StoragePhase {
        fees_collected: phase.storage_fees_collected.to_u128(),
        fees_due: phase.storage_fees_due.map(|fees| fees.to_u128()),
        status_change: status_change(&phase.status_change)?,
    })
}

fn credit_phase(phase: &TrCreditPhase) -> CreditPhase {
    CreditPhase {
        due_fees_collected: phase.due_fees_collected.map(|fees| fees.to_u128()),
        credit: phase.credit.coins.to_u128(),
    }
}

fn compute_phase(phase: &TrComputePhase) -> std::result::Result<ComputePhase, PartError> {
    match phase {
        TrComputePhase::Skipped(skipped) => Ok(ComputePhase::Skipped {
            reason: match skipped.reason {
                TxComputeSkipReason::NoState(_) => SkipReason::NoState,
                TxComputeSkipReason::BadState(_) => SkipReason::BadState,
                TxComputeSkipReason::NoGas(_) => SkipReason::NoGas,
                TxComputeSkipReason::Suspended(_) => SkipReason::Suspended,
                _ => return Err(PartError::Unsupported("TxComputeSkipReason")),
            },
        }),
        TrComputePhase::VM(vm) => {
            let info = &vm.compute_phase_vm_info;
            Ok(ComputePhase::Vm {
                success: vm.success,
                msg_state_used: vm.msg_state_used,
                account_activated: vm.account_activated,
                gas_fees: vm.gas_fees.to_u128(),
                gas_used: info.gas_used.data,
                gas_limit: info.gas_limit.data,
                gas_credit: info.gas_credit.as_ref().map(|credit| credit.data),
                mode: info.mode,
                exit_code: info.exit_code,
                exit_arg: info.exit_arg,
                vm_steps: info.vm_steps,
            })
        }
        _ => Err(PartError::Unsupported("TrComputePhase")),
    }
}

fn action_phase(phase: &TrActionPhase) -> std::result::Result<ActionPhase, PartError> {
    Ok(ActionPhase {
        success: phase.success,
        valid: phase.valid,
        no_funds: phase.no_funds,
        status_change: status_change(&phase.status_change)?,
        total_fwd_fees: phase.total_fwd_fees.map(|fees| fees.to_u128()),
        total_action_fees: phase.total_action_fees.map(|fees| fees.to_u128()),
        result_code: phase.result_code,
        result_arg: phase.result_arg,
        tot_actions: phase.tot_actions,
        spec_actions: phase.spec_actions,
        skipped_actions: phase.skipped_actions,
        msgs_created: phase.msgs_created,
    })
}

fn optional_action_phase(
    phase: Option<&TLBRef<TrActionPhase>>,
) -> std::result::Result<Option<ActionPhase>, PartError> {
    phase.map(|phase| action_phase(phase)).transpose()
}

fn message_size(size: &StorageUsedShort) -> MessageSize {
    MessageSize {
        cells: size.cells.data,
        bits: size.bits.data,
    }
}

fn bounce_phase(phase: &TrBouncePhase) -> std::result::Result<BouncePhase, PartError> {
    match phase {
        TrBouncePhase::NegFunds(_) => Ok(BouncePhase::NegFunds),
        TrBouncePhase::NoFunds(no_funds) => Ok(BouncePhase::NoFunds {
            msg_size: message_size(&no_funds.msg_size),
            req_fwd_fees: no_funds.req_fwd_fee.to_u128(),
        }),
        TrBouncePhase::Ok(ok) => Ok(BouncePhase::Ok {
            msg_size: message_size(&ok.msg_size),
            msg_fees: ok.msg_fees.to_u128(),
            fwd_fees: ok.fws_fees.to_u128(),
        }),
        _ => Err(PartError::Unsupported("TrBouncePhase")),
    }
}

fn description(descr: &TxDescr) -> std::result::Result<TxDescription, PartError> {
    Ok(match descr {
        TxDescr::Ord(ord) => TxDescription::Ord {
            credit_first: ord.credit_first,
            aborted: ord.aborted,
            destroyed: ord.destroyed,
            storage_phase: ord.storage_phase.as_ref().map(storage_phase).transpose()?,
            credit_phase: ord.credit_phase.as_ref().map(credit_phase),
            compute_phase: compute_phase(&ord.compute_phase)?,
            action_phase: optional_action_phase(ord.action.as_ref())?,
            bounce_phase: ord.bounce.as_ref().map(bounce_phase).transpose()?,
        },
        TxDescr::Storage(storage) => TxDescription::Storage {
            storage_phase: storage_phase(&storage.storage_phase)?,
        },
        TxDescr::TickTock(tick_tock) => TxDescription::TickTock {
            is_tock: tick_tock.is_tock,
            aborted: tick_tock.aborted,
            destroyed: tick_tock.destroyed,
            storage_phase: storage_phase(&tick_tock.storage_phase)?,
            compute_phase: compute_phase(&tick_tock.compute_phase)?,
            action_phase: optional_action_phase(tick_tock.action.as_ref())?,
        },
        TxDescr::SplitPrepare(split) => TxDescription::SplitPrepare {
            aborted: split.aborted,
            destroyed: split.destroyed,
            storage_phase: split
                .storage_phase
                .as_ref()
                .map(storage_phase)
                .transpose()?,
            compute_phase: compute_phase(&split.compute_phase)?,
            action_phase: optional_action_phase(split.action.as_ref())?,
        },
        TxDescr::SplitInstall(split) => TxDescription::SplitInstall {
            installed: split.installed,
        },
        TxDescr::MergePrepare(merge) => TxDescription::MergePrepare {
            aborted: merge.aborted,
            storage_phase: storage_phase(&merge.storage_phase)?,
        },
        TxDescr::MergeInstall(merge) => TxDescription::MergeInstall {
            aborted: merge.aborted,
            destroyed: merge.destroyed,
            storage_phase: merge
                .storage_phase
                .as_deref()
                .map(storage_phase)
                .transpose()?,
            credit_phase: merge.credit_phase.as_deref().map(credit_phase),
            compute_phase: compute_phase(&merge.compute_phase)?,
            action_phase: optional_action_phase(merge.action.as_ref())?,
        },
        _ => return Err(PartError::Unsupported("TxDescr")),
    })
}

/// Out-message dictionary of a transaction: `HashmapE 15 ^Message`, keyed by creation index.
type OutMsgDict = TLBHashMapE<DictKeyAdapterUint<u32>, DictValAdapterTLB<TLBRef<TonCell>>>;

/// Names the transaction and the part in the errors of one decoding.
struct Context {
    tx_hash: String,
}

impl Context {
    fn tlb<'a>(&'a self, part: &'a str) -> impl FnOnce(TonCoreError) -> DecodeError + 'a {
        move |source| DecodeError::Tlb {
            tx_hash: self.tx_hash.clone(),
            part: part.to_owned(),
            source,
        }
    }

    fn part_error(&self, part: &str, error: PartError) -> DecodeError {
        match error {
            PartError::Tlb(source) => self.tlb(part)(source),
            PartError::Unsupported(type_name) => DecodeError::Unsupported {
                tx_hash: self.tx_hash.clone(),
                part: part.to_owned(),
                type_name,
            },
        }
    }

    fn status(&self, status: &AccountStatus, part: &str) -> Result<AccountStatusKind> {
        match status {
            AccountStatus::Uninit(_) => Ok(AccountStatusKind::Uninit),
            AccountStatus::Frozen(_) => Ok(AccountStatusKind::Frozen),
            AccountStatus::Active(_) => Ok(AccountStatusKind::Active),
            AccountStatus::NonExist(_) => Ok(AccountStatusKind::NonExist),
            _ => Err(self.part_error(part, PartError::Unsupported("AccountStatus"))),
        }
    }

    fn description(&self, descr: &TxDescr) -> Result<TxDescription> {
        description(descr).map_err(|error| self.part_error("description", error))
    }

    /// The original cells of the in-message and the out-messages (in index order), so that their
    /// hashes are the on-chain ones. The message list is the first reference of the root.
    fn message_cells(&self, root: &TonCell) -> Result<(Option<TonCell>, Vec<TonCell>)> {
        let part = "message list";
        let mut root_parser = root.parser();
        let msgs = root_parser.read_next_ref().map_err(self.tlb(part))?;
        let mut parser = msgs.parser();
        let in_msg = Option::<TLBRef<TonCell>>::read(&mut parser).map_err(self.tlb(part))?;
        let mut out_msgs: HashMap<u32, TLBRef<TonCell>> = OutMsgDict::new(15)
            .read(&mut parser)
            .map_err(self.tlb(part))?;
        let count = u32::try_from(out_msgs.len())
            .map_err(|_| self.part_error(part, PartError::Unsupported("OutMsgs")))?;
        let out_msgs = (0..count)
            .map(|index| {
                out_msgs
                    .remove(&index)
                    .map(TLBRef::into_inner)
                    .ok_or_else(|| {
                        self.tlb(part)(TonCoreError::data(
                            "chainsync",
                            format!("out message {index} missing from the dictionary"),
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((in_msg.map(TLBRef::into_inner), out_msgs))
    }

    fn message(&self, cell: &TonCell, part: &str) -> Result<TonMessage> {
        let msg = Msg::<TonCell>::from_cell(cell).map_err(self.tlb(part))?;
        message(cell, &msg).map_err(|error| match error {
            MessageError::Part(error) => self.part_error(part, error),
            MessageError::Normalize(error) => error,
        })
    }
}

enum MessageError {
    Part(PartError),
    Normalize(DecodeError),
}

impl From<PartError> for MessageError {
    fn from(error: PartError) -> Self {
        Self::Part(error)
    }
}

impl From<TonCoreError> for MessageError {
    fn from(source: TonCoreError) -> Self {
        Self::Part(PartError::Tlb(source))
    }
}

fn message(cell: &TonCell, msg: &Msg) -> std::result::Result<TonMessage, MessageError> {
    let body = &msg.body.value;
    let op = if body.data_len_bits() >= 32 {
        Some(body.parser().read_num::<u32>(32)?)
    } else {
        None
    };
    let mut decoded = TonMessage {
        kind: MessageKind::Internal,
        hash: cell_hash(cell)?,
        normalized_hash: None,
        src: None,
        dest: None,
        value: 0,
        extra_currencies: BTreeMap::new(),
        ihr_disabled: false,
        bounce: false,
        bounced: false,
        fwd_fee: 0,
        ihr_fee: 0,
        import_fee: 0,
        created_lt: 0,
        created_at: 0,
        has_state_init: msg.init.is_some(),
        // A cell holds at most 1023 bits and 4 references.
        body_bits: u16::try_from(body.data_len_bits()).unwrap_or(u16::MAX),
        body_refs: u8::try_from(body.refs().len()).unwrap_or(u8::MAX),
        op,
        comment: comment_of(body),
        jetton: None,
    };
    match &msg.info {
        CommonMsgInfo::Int(info) => {
            decoded.src = addr(&info.src)?;
            decoded.dest = addr(&info.dst)?;
            decoded.value = info.value.coins.to_u128();
            decoded.extra_currencies = extra_currencies(&info.value);
            decoded.ihr_disabled = info.ihr_disabled;
            decoded.bounce = info.bounce;
            decoded.bounced = info.bounced;
            decoded.fwd_fee = info.fwd_fee.to_u128();
            decoded.ihr_fee = info.ihr_fee.to_u128();
            decoded.created_lt = info.created_lt;
            decoded.created_at = info.created_at;
            decoded.jetton = JettonBody::parse(body);
        }
        CommonMsgInfo::ExtIn(info) => {
            decoded.kind = MessageKind::ExternalIn;
            decoded.src = ext_addr(&info.src)?;
            decoded.dest = Some(int_addr(&info.dst)?);
            decoded.import_fee = info.import_fee.to_u128();
            decoded.normalized_hash =
                Some(normalized_external_hash(msg).map_err(MessageError::Normalize)?);
        }
        CommonMsgInfo::ExtOut(info) => {
            decoded.kind = MessageKind::ExternalOut;
            decoded.src = Some(int_addr(&info.src)?);
            decoded.dest = ext_addr(&info.dst)?;
            decoded.created_lt = info.created_lt;
            decoded.created_at = info.created_at;
        }
        _ => return Err(PartError::Unsupported("CommonMsgInfo").into()),
    }
    Ok(decoded)
}

/// Serde helpers for the JSON conventions of the fixtures.
mod json {
    use std::fmt::Display;

    use serde::Serializer;

    /// A number as a decimal string.
    pub(super) fn decimal<T: Display, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    /// An optional number as a decimal string or `null`.
    pub(super) fn opt_decimal<T: Display, S: Serializer>(
        value: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.collect_str(value),
            None => serializer.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extern_address_prints_its_bits_as_one_number() {
        // 10 bits 0000001101 = 0xd, as @ton/core prints `ext:10:d`.
        assert_eq!(bits_as_hex_number(&[0b0000_0011, 0b0100_0000], 10), "d");
        assert_eq!(bits_as_hex_number(&[0xff], 3), "7");
        assert_eq!(bits_as_hex_number(&[0x00, 0x00], 16), "0");
        assert_eq!(bits_as_hex_number(&[], 0), "0");
        assert_eq!(bits_as_hex_number(&[0xab, 0xcd], 16), "abcd");
    }

    fn comment_cell(text: &[u8], split_at: usize) -> TonCell {
        let mut tail = TonCell::builder();
        tail.write_bits(&text[split_at..], (text.len() - split_at) * 8)
            .expect("tail fits");
        let mut head = TonCell::builder();
        head.write_num(&0u32, 32).expect("op fits");
        head.write_bits(&text[..split_at], split_at * 8)
            .expect("head fits");
        if split_at < text.len() {
            head.write_ref(tail.build().expect("tail builds"))
                .expect("ref fits");
        }
        head.build().expect("head builds")
    }

    #[test]
    fn comment_follows_the_snake_into_references() {
        let text = "héllo, snake".as_bytes();
        assert_eq!(
            comment_of(&comment_cell(text, 5)).as_deref(),
            Some("héllo, snake")
        );
        assert_eq!(
            comment_of(&comment_cell(text, text.len())).as_deref(),
            Some("héllo, snake")
        );
        assert_eq!(comment_of(&comment_cell(b"", 0)).as_deref(), Some(""));
    }

    #[test]
    fn comment_rejects_other_ops_and_invalid_utf8() {
        // "é" split across cells is still valid: the bytes are joined before decoding.
        assert_eq!(
            comment_of(&comment_cell("é".as_bytes(), 1)).as_deref(),
            Some("é")
        );
        assert_eq!(comment_of(&comment_cell(&[0xff, 0xfe], 2)), None);
        let mut builder = TonCell::builder();
        builder.write_num(&OP_EXCESSES, 32).expect("op fits");
        assert_eq!(comment_of(&builder.build().expect("builds")), None);
        assert_eq!(comment_of(TonCell::empty()), None);
    }
}
