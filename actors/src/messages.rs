//! Messages that cross actors. Messages handled by only one actor live next to it.

use std::collections::HashMap;
use std::time::Duration;

use actix::Message;
use alloy::primitives::B256;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::chain::ChainEvent;
use crate::error::Result;
use crate::writer::transfers::TransferStep;

/// What the store writer acknowledges: the chain event up to `block` is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The block the committed batch leaves the chain at (for a reorg: the fork point).
    pub block: u64,
}

/// Listener → reconciler: apply this chain event. Answered once the store writer committed it,
/// so the listener never runs ahead of what is durable by more than its lookahead.
#[derive(Debug, Message)]
#[rtype(result = "Result<Checkpoint>")]
pub struct ApplyChainEvent(pub ChainEvent);

/// Reconciler → store writer: commit this work in one transaction.
#[derive(Debug, Message)]
#[rtype(result = "Result<Checkpoint>")]
pub struct WriteBatch {
    /// What to write.
    pub work: WriteWork,
}

/// The two kinds of work the reconciler hands to the writer.
#[derive(Debug)]
pub enum WriteWork {
    /// A chain event, with what the reconciler read for it beforehand.
    Chain {
        /// The chain event to persist.
        event: ChainEvent,
        /// Reads made before the transaction (RPC calls never happen inside it).
        reads: BatchReads,
    },
    /// A pass of the stuck sweeper.
    Sweep(SweepWork),
}

/// What the reconciler read before a batch's transaction.
#[derive(Debug, Default)]
pub struct BatchReads {
    /// `getTokenLock` of each `StreamLockCreated` log, by (tx hash, log index).
    pub lock_reads: HashMap<(B256, u64), Value>,
    /// The node's finalized block, under a finality rule.
    pub finalized: Option<u64>,
    /// The reconciler's clock.
    pub now: DateTime<Utc>,
}

/// One pass of the sweeper: decided steps, plus the periodic housekeeping due now.
#[derive(Debug)]
pub struct SweepWork {
    /// Steps for open transfers.
    pub steps: Vec<TransferStep>,
    /// The node's finalized block, under a finality rule.
    pub finalized: Option<u64>,
    /// Whether the chain's head is stalled.
    pub stalled: bool,
    /// Streams past their end time plus this grace are flagged overdue.
    pub overdue_grace: Duration,
    /// Pruning horizons, when a retention pass is due.
    pub retention: Option<Retention>,
    /// The reconciler's clock.
    pub now: DateTime<Utc>,
}

/// How long housekeeping keeps rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Blocks below the reorg window older than this are pruned from the block window.
    pub block_window: Duration,
    /// Blocks kept for reorg detection regardless of age.
    pub reorg_window: u64,
    /// Logs marked removed are kept this long.
    pub removed_events: Duration,
    /// Delivered outbox rows are kept this long.
    pub delivered_outbox: Duration,
}
