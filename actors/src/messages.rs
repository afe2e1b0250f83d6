//! Messages that cross actors. Messages handled by only one actor live next to it.

use actix::Message;

use crate::chain::ChainEvent;
use crate::error::Result;

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

/// Reconciler → store writer: commit this event (and, later, the reconciler's steps) in one
/// transaction.
#[derive(Debug, Message)]
#[rtype(result = "Result<Checkpoint>")]
pub struct WriteBatch {
    /// The chain event to persist.
    pub event: ChainEvent,
}
