//! Errors of the devnet tooling.

use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::B256;

use crate::redact::redact_urls_in_text;

/// Result alias of the devnet module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while deploying to or driving a devnet.
///
/// Messages never carry an RPC URL as given: transport errors are passed through
/// [`redact_urls_in_text`] first.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node could not be reached or did not speak JSON-RPC.
    #[error("cannot connect to the devnet node: {detail}")]
    Connect {
        /// The transport error, redacted.
        detail: String,
    },
    /// A JSON-RPC call failed.
    #[error("devnet RPC `{method}` failed: {detail}")]
    Rpc {
        /// JSON-RPC method (or contract view) that failed.
        method: &'static str,
        /// The transport or decoding error, redacted.
        detail: String,
    },
    /// A transaction that had to succeed was mined with status 0.
    #[error("transaction {tx_hash} ({operation}) reverted")]
    Reverted {
        /// What the transaction was for.
        operation: String,
        /// Its hash.
        tx_hash: B256,
    },
    /// A sent transaction was not mined in time.
    #[error("transaction {tx_hash} ({operation}) not mined after {waited:?}")]
    NotMined {
        /// What the transaction was for.
        operation: String,
        /// Its hash.
        tx_hash: B256,
        /// How long we waited.
        waited: Duration,
    },
    /// A deployment receipt named no contract address.
    #[error("deployment of {contract} in transaction {tx_hash} created no contract")]
    NoContract {
        /// Contract name.
        contract: &'static str,
        /// Transaction hash.
        tx_hash: B256,
    },
    /// The deployment JSON could not be read or written.
    #[error("deployment file {path}: {detail}")]
    DeploymentFile {
        /// File path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// An argument is out of range (e.g. a non-positive transaction rate).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The chain is not in the state the operation expects (e.g. a log it should have emitted is
    /// missing).
    #[error("unexpected devnet state: {0}")]
    Unexpected(String),
}

impl Error {
    /// A failed RPC call, with any URL in the error text redacted.
    pub(crate) fn rpc(method: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Rpc {
            method,
            detail: redact_urls_in_text(&err.to_string()),
        }
    }

    /// Whether retrying the same call later could succeed (the node was unreachable or slow),
    /// as opposed to a transaction that reverted or a file that is wrong.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Rpc { .. } | Self::NotMined { .. }
        )
    }
}
