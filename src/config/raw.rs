//! The configuration file exactly as written: every key, its TOML type, nothing checked yet.
//!
//! Keys with a default are `Option`s (the defaults live with validation, in one place per
//! section); integers are read as `i64`, TOML's own integer type, so that a negative or oversized
//! value gets a message naming the allowed range rather than a bare type error. Durations and URLs
//! are strings until validation parses them.

use serde::Deserialize;

/// The whole file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) database: RawDatabase,
    #[serde(default)]
    pub(super) api: RawListener,
    #[serde(default)]
    pub(super) metrics: RawListener,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) retention: RawRetention,
    #[serde(default)]
    pub(super) evm: Vec<RawEvmChain>,
    #[serde(default)]
    pub(super) ton: Vec<RawTonNetwork>,
    #[serde(default)]
    pub(super) webhooks: RawWebhooks,
}

/// `[database]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) url: Option<String>,
    pub(super) max_connections: Option<i64>,
    pub(super) api_max_connections: Option<i64>,
    pub(super) statement_timeout: Option<String>,
}

/// `[api]` and `[metrics]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) listen: Option<String>,
}

/// `[log]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) level: Option<String>,
    pub(super) format: Option<RawLogFormat>,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawLogFormat {
    Text,
    Json,
}

/// `[retention]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) block_window: Option<String>,
    pub(super) removed_events: Option<String>,
    pub(super) delivered_outbox: Option<String>,
}

/// One `[[evm]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvmChain {
    pub(super) name: String,
    pub(super) chain_id: i64,
    pub(super) rpc_urls: Option<Vec<String>>,
    pub(super) ws_url: Option<String>,
    pub(super) confirmations: Option<i64>,
    pub(super) finality: Option<RawFinality>,
    pub(super) poll_interval: Option<String>,
    pub(super) max_block_range: Option<i64>,
    pub(super) requests_per_second: Option<f64>,
    pub(super) reorg_window: Option<i64>,
    pub(super) stuck_after: Option<String>,
    pub(super) stuck_after_blocks: Option<i64>,
    pub(super) dropped_after: Option<String>,
    pub(super) head_stall_after: Option<String>,
    pub(super) overdue_grace: Option<String>,
    pub(super) drift_check_interval: Option<String>,
    #[serde(default)]
    pub(super) contracts: Vec<RawContract>,
}

/// `evm[].finality`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawFinality {
    Finalized,
}

/// One `[[evm.contracts]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContract {
    pub(super) role: RawContractRole,
    pub(super) address: String,
    pub(super) start_block: Option<i64>,
}

/// `evm[].contracts[].role`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawContractRole {
    StreamLockManager,
    ProducerStorage,
    Producer,
    Token,
}

/// One `[[ton]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTonNetwork {
    pub(super) name: String,
    pub(super) network: String,
    pub(super) liteservers: Option<String>,
    pub(super) liteservers_inline: Option<Vec<RawLiteserver>>,
    pub(super) confirmations: Option<i64>,
    pub(super) poll_interval: Option<String>,
    pub(super) stuck_after: Option<String>,
    pub(super) request_timeout: Option<String>,
    #[serde(default)]
    pub(super) accounts: Vec<RawTonAccount>,
}

/// One entry of `ton[].liteservers_inline`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLiteserver {
    /// An IPv4 address: a signed 32-bit integer as in `global.config.json`, or a dotted string.
    pub(super) ip: toml::Value,
    pub(super) port: i64,
    pub(super) key: String,
}

/// One `[[ton.accounts]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTonAccount {
    pub(super) role: RawTonAccountRole,
    pub(super) address: String,
    pub(super) memo: Option<String>,
    pub(super) jetton_masters: Option<Vec<String>>,
}

/// `ton[].accounts[].role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawTonAccountRole {
    Deposit,
    HotWallet,
    JettonDeposit,
}

/// `[webhooks]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhooks {
    #[serde(default)]
    pub(super) endpoints: Vec<RawWebhookEndpoint>,
    pub(super) max_attempts: Option<i64>,
}

/// One entry of `webhooks.endpoints`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhookEndpoint {
    pub(super) url: String,
    pub(super) secret_env: String,
}
