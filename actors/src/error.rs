//! Errors of the actor layer. Each error classifies itself: [`Error::is_retryable`] decides
//! retry versus stop, and [`Error::kind`] is the only error text a metric label ever gets.

use alloy::primitives::B256;

/// Result alias of the actor layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the actor system.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An RPC call failed (transport, HTTP status, JSON-RPC error or malformed answer).
    #[error("chain {chain}: rpc {method} via {endpoint} failed: {message}")]
    Rpc {
        /// Chain name.
        chain: String,
        /// JSON-RPC method.
        method: &'static str,
        /// The endpoint, already redacted.
        endpoint: String,
        /// What went wrong (never carries the unredacted URL).
        message: String,
        /// Whether trying again may help.
        retryable: bool,
    },
    /// The node answered something that contradicts itself (a log outside the header chain, a
    /// missing block that should exist).
    #[error("chain {chain}: inconsistent node answer at block {block}: {message}")]
    Inconsistent {
        /// Chain name.
        chain: String,
        /// Block number concerned.
        block: u64,
        /// What did not add up.
        message: String,
    },
    /// The chain the node serves is not the chain this database indexes.
    #[error("chain {chain}: identity mismatch: database has chain id {stored_chain_id} genesis {stored_genesis}, node reports chain id {node_chain_id} genesis {node_genesis}; refusing to index another chain into this database")]
    IdentityMismatch {
        /// Chain name.
        chain: String,
        /// Chain id stored in the database.
        stored_chain_id: u64,
        /// Genesis hash stored in the database.
        stored_genesis: B256,
        /// Chain id the node reports.
        node_chain_id: u64,
        /// Genesis hash the node reports.
        node_genesis: B256,
    },
    /// The TON liteservers serve another network than the one this database indexes.
    #[error("chain {chain}: {message}")]
    NetworkMismatch {
        /// Chain name.
        chain: String,
        /// What differs.
        message: String,
    },
    /// A reorg reaches below the recent-block window: indexing of the chain halts.
    #[error("chain {chain}: fork point is older than the reorg window (window starts at block {window_start}); indexing halted, run `chainsync rewind` after checking the node")]
    ForkBeyondWindow {
        /// Chain name.
        chain: String,
        /// Lowest block the window holds.
        window_start: u64,
    },
    /// A database operation failed.
    #[error("database {op} failed: {source}")]
    Db {
        /// The operation, e.g. `commit_batch`.
        op: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// A background task of a chain (a prefetch) failed to complete.
    #[error("chain {chain}: background task failed: {message}")]
    Task {
        /// Chain name.
        chain: String,
        /// What happened.
        message: String,
    },
    /// An actor mailbox was closed or a send timed out.
    #[error("actor {actor} unavailable: {message}")]
    Mailbox {
        /// The actor that did not answer.
        actor: &'static str,
        /// What happened.
        message: String,
    },
}

impl Error {
    /// Whether the same operation may succeed when tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Rpc { retryable, .. } => *retryable,
            Error::Inconsistent { .. } => true,
            Error::Db { source, .. } => !matches!(
                source,
                sqlx::Error::ColumnDecode { .. }
                    | sqlx::Error::Decode(_)
                    | sqlx::Error::TypeNotFound { .. }
            ),
            Error::Mailbox { .. } | Error::Task { .. } => true,
            Error::IdentityMismatch { .. }
            | Error::NetworkMismatch { .. }
            | Error::ForkBeyondWindow { .. } => false,
        }
    }

    /// A fixed, low-cardinality name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Rpc { .. } => "rpc",
            Error::Inconsistent { .. } => "inconsistent",
            Error::IdentityMismatch { .. } | Error::NetworkMismatch { .. } => "identity_mismatch",
            Error::ForkBeyondWindow { .. } => "fork_beyond_window",
            Error::Db { .. } => "db",
            Error::Mailbox { .. } => "mailbox",
            Error::Task { .. } => "task",
        }
    }

    /// Wraps a sqlx error with the operation it interrupted.
    pub fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |source| Error::Db { op, source }
    }
}
