//! The pure chain domain: block references, the events a listener emits, and reorg detection.
//!
//! Nothing here performs I/O or knows about actix or sqlx, so every rule is unit-tested directly.

mod reorg;

pub use reorg::{ForkSearch, ReorgWindow, WindowCheck};

use alloy::primitives::{Address, B256};

/// A block as the reorg logic sees it: number, hash, parent hash and timestamp (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// Block height.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Hash of the parent block.
    pub parent_hash: B256,
    /// Block timestamp, seconds since the Unix epoch.
    pub timestamp: u64,
}

/// One raw log together with where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct RawLog {
    /// Hash of the block holding the log.
    pub block_hash: B256,
    /// Number of the block holding the log.
    pub block_number: u64,
    /// Timestamp of that block, when known.
    pub block_timestamp: Option<u64>,
    /// Transaction hash.
    pub tx_hash: B256,
    /// Index of the transaction in the block.
    pub tx_index: u64,
    /// Index of the log in the block.
    pub log_index: u64,
    /// Emitting contract.
    pub address: Address,
    /// Topics (topic0 first).
    pub topics: Vec<B256>,
    /// ABI-encoded data.
    pub data: Vec<u8>,
    /// What the log decodes to.
    pub decoded: crate::contracts::DecodeOutcome,
}

/// How far one committed batch moves a set of contract cursors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorAdvance {
    /// The contracts whose cursor moves.
    pub contracts: Vec<Address>,
    /// The last block now covered for them.
    pub to_block: u64,
}

/// A contract discovered on chain (a producer clone announced by `LogProducer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredContract {
    /// The clone's address.
    pub address: Address,
    /// The block the announcement appeared in: the clone is indexed from here.
    pub from_block: u64,
    /// The announcing transaction.
    pub tx_hash: B256,
}

/// What a chain listener tells the rest of the system. Reorgs are data: a `Reorged` is always
/// sent before the blocks of the new branch.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainEvent {
    /// New canonical blocks (possibly none, when only cursors move) and the logs found in them.
    Committed {
        /// Headers that extend the recent-block window (live mode; empty during backfill).
        blocks: Vec<BlockRef>,
        /// Logs of watched contracts, ordered by (block, log index).
        logs: Vec<RawLog>,
        /// Cursor movement covered by this batch.
        cursor: CursorAdvance,
        /// Contracts discovered in these logs, to be watched from their block on.
        discovered: Vec<DiscoveredContract>,
        /// The node's head when the batch was fetched.
        head: u64,
        /// True when `blocks` restart the window (after a catch-up over blocks deeper than the
        /// window): older window rows are dropped.
        reset_window: bool,
    },
    /// The blocks above `fork_point` were replaced by another branch.
    Reorged {
        /// The highest block both branches share.
        fork_point: u64,
        /// The orphaned blocks (highest first) as the listener had them.
        orphaned: Vec<BlockRef>,
        /// The node's head when the reorg was detected.
        head: u64,
    },
}

impl ChainEvent {
    /// The number of blocks a reorg replaced (0 for `Committed`).
    pub fn reorg_depth(&self) -> u64 {
        match self {
            ChainEvent::Reorged { orphaned, .. } => orphaned.len() as u64,
            ChainEvent::Committed { .. } => 0,
        }
    }

    /// The highest block this event leaves indexed, if it says.
    pub fn checkpoint(&self) -> u64 {
        match self {
            ChainEvent::Committed { cursor, .. } => cursor.to_block,
            ChainEvent::Reorged { fork_point, .. } => *fork_point,
        }
    }
}
