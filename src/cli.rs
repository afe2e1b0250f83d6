//! The command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// chainsync: indexes EVM stream contracts and TON accounts into PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "chainsync", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "CHAINSYNC_CONFIG",
        default_value = "config/default.toml"
    )]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Index every configured chain, serve the API and /metrics; Ctrl-C stops gracefully.
    Run,
    /// Apply pending database migrations (idempotent) and exit.
    Migrate {
        /// Database URL; defaults to DATABASE_URL, then the configuration's `database.url`.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Validate a configuration file; exit 0 when valid, 2 with a message naming the key otherwise.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Re-index a chain from block N: everything above N-1 is marked removed and derived again.
    Rewind {
        /// Chain name.
        #[arg(long)]
        chain: String,
        /// First block to index again.
        #[arg(long)]
        to: u64,
    },
    /// Compare stored logs with the node's eth_getLogs; exit 1 on any missing, extra or duplicate row.
    Verify {
        /// Chain name.
        #[arg(long)]
        chain: String,
        /// First block to compare.
        #[arg(long)]
        from: u64,
        /// Last block to compare.
        #[arg(long)]
        to: u64,
    },
    /// Register a transaction to follow before it is mined: it becomes a `watched_tx` transfer in
    /// `pending`, then confirming / confirmed, failed (reverted, replaced, dropped) or stuck. On a
    /// TON network: an outgoing transfer by its external message's normalised hash (`ton_outgoing`).
    Watch {
        /// Chain name.
        #[arg(long)]
        chain: String,
        /// EVM: the transaction hash (0x + 64 hex digits). TON: the TEP-467 normalised hash of the
        /// external message that will make the hot wallet send the transfer (64 hex digits).
        tx_hash: String,
        /// Sender address: with --nonce, another transaction mined with that nonce fails this one
        /// as replaced.
        #[arg(long, requires = "nonce")]
        from: Option<String>,
        /// The transaction's nonce.
        #[arg(long, requires = "from")]
        nonce: Option<u64>,
        /// Free text kept with the transfer (e.g. the backend's payment id).
        #[arg(long)]
        label: Option<String>,
    },
    /// The local devnet: deploy the test contracts, drive traffic.
    #[command(subcommand)]
    Devnet(crate::devnet::DevnetCommand),
}
