//! Every metric chainsync exports, declared in one place.
//!
//! Names follow `chainsync_<subsystem>_<name>_<unit>[_total]` in base units. Labels come from
//! small fixed sets: chain name (from the configuration), contract role, event name (from the
//! ABI, plus `unknown` and `quarantined`), RPC method, outcome, status, kind, operation. Labels
//! never carry addresses, hashes, user input or error text.

use std::sync::LazyLock;

use prometheus::{
    register_gauge_vec, register_histogram_vec, register_int_counter_vec, register_int_gauge_vec,
    GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec,
};

/// Buckets for RPC calls: 5 ms to 30 s.
const RPC_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets for database transactions: 1 ms to 10 s.
const DB_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Buckets for reorg depth in blocks.
const REORG_DEPTH_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 64.0, 128.0];
/// Buckets for time to confirmation: 100 ms (fast devnets) to 2 h.
const CONFIRMATION_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0,
];

/// Transfer kinds tracked on EVM chains (the `kind` label), as in the `transfers` table.
pub const EVM_TRANSFER_KINDS: &[&str] = &[
    "stream_lock_created",
    "stream_settled",
    "partial_claim",
    "emergency_withdraw",
    "balance_withdrawn",
    "watched_tx",
];
/// Transfer statuses (the `status` label), as in the `transfers` table.
pub const TRANSFER_STATUSES: &[&str] = &["pending", "confirming", "confirmed", "failed", "reorged"];

/// All metrics, registered in the default Prometheus registry on first use.
pub struct Metrics {
    /// `chainsync_build_info{version}`: always 1; the version label says which build runs.
    pub build_info: IntGaugeVec,
    /// `chainsync_chain_head_block{chain}`: the node's latest block (TON: masterchain seqno).
    pub chain_head_block: IntGaugeVec,
    /// `chainsync_indexed_block{chain}`: the highest block whose events are committed.
    pub indexed_block: IntGaugeVec,
    /// `chainsync_confirmed_block{chain}`: the highest block past the confirmation threshold.
    pub confirmed_block: IntGaugeVec,
    /// `chainsync_chain_head_age_seconds{chain}`: seconds since the head last moved.
    pub chain_head_age_seconds: GaugeVec,
    /// `chainsync_chain_halted{chain}`: 1 when indexing stopped on a fork beyond the reorg window.
    pub chain_halted: IntGaugeVec,
    /// `chainsync_events_total{chain,contract,event}`: logs committed, by contract role and event
    /// name (`unknown` for topics outside the ABI, `quarantined` for logs that failed to decode).
    pub events_total: IntCounterVec,
    /// `chainsync_admin_events_total{chain,event}`: Upgraded, Paused, Unpaused, OwnershipTransferred.
    pub admin_events_total: IntCounterVec,
    /// `chainsync_reorgs_total{chain}`: reorgs detected.
    pub reorgs_total: IntCounterVec,
    /// `chainsync_reorg_depth_blocks{chain}`: blocks replaced per reorg.
    pub reorg_depth_blocks: HistogramVec,
    /// `chainsync_rpc_requests_total{chain,method,outcome}`: RPC calls by outcome (`ok`,
    /// `rate_limited`, `server_error`, `rpc_error`, `timeout`, `transport`, `malformed`, `range_too_large`).
    pub rpc_requests_total: IntCounterVec,
    /// `chainsync_rpc_request_duration_seconds{chain,method}`: RPC call latency.
    pub rpc_request_duration_seconds: HistogramVec,
    /// `chainsync_getlogs_block_range_blocks{chain}`: the current adaptive `eth_getLogs` span.
    pub getlogs_block_range_blocks: IntGaugeVec,
    /// `chainsync_getlogs_range_reductions_total{chain,reason}`: range cuts (`provider_hint`,
    /// `halved`, `dense_blocks` when a batch held more logs than one batch should).
    pub getlogs_range_reductions_total: IntCounterVec,
    /// `chainsync_backfill_remaining_blocks{chain}`: blocks left before the listener is live.
    pub backfill_remaining_blocks: IntGaugeVec,
    /// `chainsync_db_transaction_duration_seconds{op}`: database transaction latency.
    pub db_transaction_duration_seconds: HistogramVec,
    /// `chainsync_db_errors_total{op}`: failed database operations.
    pub db_errors_total: IntCounterVec,
    /// `chainsync_actor_mailbox_messages{actor}`: messages sent to an actor and not yet handled.
    pub actor_mailbox_messages: IntGaugeVec,
    /// `chainsync_actor_restarts_total{actor}`: supervisor restarts.
    pub actor_restarts_total: IntCounterVec,
    /// `chainsync_listener_progress_timestamp_seconds{chain}`: when the listener loop last completed
    /// a step (Unix seconds); `/readyz` and alerts use it to spot a dead loop.
    pub listener_progress_timestamp_seconds: GaugeVec,
    /// `chainsync_transfers{chain,kind,status}`: tracked transfers by status.
    pub transfers: IntGaugeVec,
    /// `chainsync_stuck_transfers{chain,kind}`: transfers currently stuck.
    pub stuck_transfers: IntGaugeVec,
    /// `chainsync_transfer_confirmation_seconds{chain,kind}`: first seen to confirmed.
    pub transfer_confirmation_seconds: HistogramVec,
    /// `chainsync_webhook_deliveries_total{outcome}`: webhook attempts by outcome.
    pub webhook_deliveries_total: IntCounterVec,
    /// `chainsync_deep_reorgs_total{chain}`: reorgs that replaced confirmed blocks (projections
    /// were rebuilt). Critical: the confirmation threshold is too low for this chain.
    pub deep_reorgs_total: IntCounterVec,
    /// `chainsync_chain_stalled{chain}`: 1 while the head has not moved for `head_stall_after`.
    pub chain_stalled: IntGaugeVec,
    /// `chainsync_balance_drift_rows{chain}`: virtual-balance rows whose last on-chain check
    /// (`getBalanceSummary`) disagreed with the projection.
    pub balance_drift_rows: IntGaugeVec,
    /// `chainsync_balance_usage_pool_drift_rows{chain}`: rows carrying the documented usage-pool
    /// drift (paid out of a pool but still counted in the contract's total).
    pub balance_usage_pool_drift_rows: IntGaugeVec,
    /// `chainsync_overdue_streams{chain}`: active streams past their end time plus the grace.
    pub overdue_streams: IntGaugeVec,
    /// `chainsync_projection_orphan_updates_total{chain}`: confirmed stream updates whose stream
    /// is not indexed (created before the configured start block).
    pub projection_orphan_updates_total: IntCounterVec,
}

/// Builds a metric or aborts start-up: a duplicate or malformed metric is a programming error
/// caught by the first test run, never a runtime condition.
macro_rules! metric {
    ($e:expr) => {
        $e.expect("metric definitions are static and valid")
    };
}

impl Metrics {
    fn new() -> Self {
        let metrics = Self {
            build_info: metric!(register_int_gauge_vec!(
                "chainsync_build_info",
                "Build information; always 1.",
                &["version"]
            )),
            chain_head_block: metric!(register_int_gauge_vec!(
                "chainsync_chain_head_block",
                "Latest block reported by the node.",
                &["chain"]
            )),
            indexed_block: metric!(register_int_gauge_vec!(
                "chainsync_indexed_block",
                "Highest block whose events are committed.",
                &["chain"]
            )),
            confirmed_block: metric!(register_int_gauge_vec!(
                "chainsync_confirmed_block",
                "Highest block past the confirmation threshold.",
                &["chain"]
            )),
            chain_head_age_seconds: metric!(register_gauge_vec!(
                "chainsync_chain_head_age_seconds",
                "Seconds since the chain head last moved.",
                &["chain"]
            )),
            chain_halted: metric!(register_int_gauge_vec!(
                "chainsync_chain_halted",
                "1 when indexing halted because a fork reached below the reorg window.",
                &["chain"]
            )),
            events_total: metric!(register_int_counter_vec!(
                "chainsync_events_total",
                "Logs committed, by contract role and event name.",
                &["chain", "contract", "event"]
            )),
            admin_events_total: metric!(register_int_counter_vec!(
                "chainsync_admin_events_total",
                "Admin events seen: Upgraded, Paused, Unpaused, OwnershipTransferred.",
                &["chain", "event"]
            )),
            reorgs_total: metric!(register_int_counter_vec!(
                "chainsync_reorgs_total",
                "Reorgs detected.",
                &["chain"]
            )),
            reorg_depth_blocks: metric!(register_histogram_vec!(
                "chainsync_reorg_depth_blocks",
                "Blocks replaced per reorg.",
                &["chain"],
                REORG_DEPTH_BUCKETS.to_vec()
            )),
            rpc_requests_total: metric!(register_int_counter_vec!(
                "chainsync_rpc_requests_total",
                "RPC requests by method and outcome.",
                &["chain", "method", "outcome"]
            )),
            rpc_request_duration_seconds: metric!(register_histogram_vec!(
                "chainsync_rpc_request_duration_seconds",
                "RPC request latency.",
                &["chain", "method"],
                RPC_BUCKETS.to_vec()
            )),
            getlogs_block_range_blocks: metric!(register_int_gauge_vec!(
                "chainsync_getlogs_block_range_blocks",
                "Current adaptive eth_getLogs block span.",
                &["chain"]
            )),
            getlogs_range_reductions_total: metric!(register_int_counter_vec!(
                "chainsync_getlogs_range_reductions_total",
                "eth_getLogs range reductions, by reason.",
                &["chain", "reason"]
            )),
            backfill_remaining_blocks: metric!(register_int_gauge_vec!(
                "chainsync_backfill_remaining_blocks",
                "Blocks left to backfill before the listener follows the head.",
                &["chain"]
            )),
            db_transaction_duration_seconds: metric!(register_histogram_vec!(
                "chainsync_db_transaction_duration_seconds",
                "Database transaction latency by operation.",
                &["op"],
                DB_BUCKETS.to_vec()
            )),
            db_errors_total: metric!(register_int_counter_vec!(
                "chainsync_db_errors_total",
                "Failed database operations.",
                &["op"]
            )),
            actor_mailbox_messages: metric!(register_int_gauge_vec!(
                "chainsync_actor_mailbox_messages",
                "Messages sent to an actor and not yet handled.",
                &["actor"]
            )),
            actor_restarts_total: metric!(register_int_counter_vec!(
                "chainsync_actor_restarts_total",
                "Actor restarts by the supervisor.",
                &["actor"]
            )),
            listener_progress_timestamp_seconds: metric!(register_gauge_vec!(
                "chainsync_listener_progress_timestamp_seconds",
                "Unix time of the listener loop's last completed step.",
                &["chain"]
            )),
            transfers: metric!(register_int_gauge_vec!(
                "chainsync_transfers",
                "Tracked transfers by kind and status.",
                &["chain", "kind", "status"]
            )),
            stuck_transfers: metric!(register_int_gauge_vec!(
                "chainsync_stuck_transfers",
                "Transfers currently flagged stuck.",
                &["chain", "kind"]
            )),
            transfer_confirmation_seconds: metric!(register_histogram_vec!(
                "chainsync_transfer_confirmation_seconds",
                "Time from first seen to confirmed.",
                &["chain", "kind"],
                CONFIRMATION_BUCKETS.to_vec()
            )),
            webhook_deliveries_total: metric!(register_int_counter_vec!(
                "chainsync_webhook_deliveries_total",
                "Webhook delivery attempts by outcome.",
                &["outcome"]
            )),
            deep_reorgs_total: metric!(register_int_counter_vec!(
                "chainsync_deep_reorgs_total",
                "Reorgs that replaced confirmed blocks; projections were rebuilt.",
                &["chain"]
            )),
            chain_stalled: metric!(register_int_gauge_vec!(
                "chainsync_chain_stalled",
                "1 while the chain head has not moved for head_stall_after.",
                &["chain"]
            )),
            balance_drift_rows: metric!(register_int_gauge_vec!(
                "chainsync_balance_drift_rows",
                "Virtual-balance rows whose last on-chain check disagreed with the projection.",
                &["chain"]
            )),
            balance_usage_pool_drift_rows: metric!(register_int_gauge_vec!(
                "chainsync_balance_usage_pool_drift_rows",
                "Virtual-balance rows carrying the documented usage-pool drift.",
                &["chain"]
            )),
            overdue_streams: metric!(register_int_gauge_vec!(
                "chainsync_overdue_streams",
                "Active streams past their end time plus the overdue grace.",
                &["chain"]
            )),
            projection_orphan_updates_total: metric!(register_int_counter_vec!(
                "chainsync_projection_orphan_updates_total",
                "Confirmed stream updates whose stream is not indexed.",
                &["chain"]
            )),
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for outcome in ["ok", "retry", "failed"] {
            metrics
                .webhook_deliveries_total
                .with_label_values(&[outcome]);
        }
        for op in ["commit_batch", "unwind_reorg", "sweep"] {
            metrics.db_errors_total.with_label_values(&[op]);
            metrics
                .db_transaction_duration_seconds
                .with_label_values(&[op]);
        }
        metrics
            .actor_restarts_total
            .with_label_values(&["evm_listener"]);
        for actor in ["reconciler", "store_writer"] {
            metrics.actor_mailbox_messages.with_label_values(&[actor]);
        }
        metrics
    }

    /// Creates the series of one EVM chain at zero so they exist before the first event.
    pub fn init_evm_chain(&self, chain: &str, contract_roles: &[&str]) {
        for gauge in [
            &self.chain_head_block,
            &self.indexed_block,
            &self.confirmed_block,
            &self.chain_halted,
            &self.backfill_remaining_blocks,
            &self.getlogs_block_range_blocks,
        ] {
            gauge.with_label_values(&[chain]);
        }
        self.chain_head_age_seconds.with_label_values(&[chain]);
        self.listener_progress_timestamp_seconds
            .with_label_values(&[chain]);
        self.reorgs_total.with_label_values(&[chain]);
        self.reorg_depth_blocks.with_label_values(&[chain]);
        self.deep_reorgs_total.with_label_values(&[chain]);
        self.projection_orphan_updates_total
            .with_label_values(&[chain]);
        for gauge in [
            &self.chain_stalled,
            &self.balance_drift_rows,
            &self.balance_usage_pool_drift_rows,
            &self.overdue_streams,
        ] {
            gauge.with_label_values(&[chain]);
        }
        for role in contract_roles {
            for event in crate::contracts::EVENT_NAMES
                .iter()
                .copied()
                .chain(["unknown", "quarantined"])
            {
                self.events_total.with_label_values(&[chain, role, event]);
            }
        }
        for event in ["Upgraded", "Paused", "Unpaused", "OwnershipTransferred"] {
            self.admin_events_total.with_label_values(&[chain, event]);
        }
        for kind in EVM_TRANSFER_KINDS {
            self.stuck_transfers.with_label_values(&[chain, kind]);
            self.transfer_confirmation_seconds
                .with_label_values(&[chain, kind]);
            for status in TRANSFER_STATUSES {
                self.transfers.with_label_values(&[chain, kind, status]);
            }
        }
        for reason in ["provider_hint", "halved", "dense_blocks"] {
            self.getlogs_range_reductions_total
                .with_label_values(&[chain, reason]);
        }
        for method in crate::listener::rpc::RPC_METHODS {
            self.rpc_request_duration_seconds
                .with_label_values(&[chain, method]);
            for outcome in crate::listener::rpc::RPC_OUTCOMES {
                self.rpc_requests_total
                    .with_label_values(&[chain, method, outcome]);
            }
        }
    }
}

impl Metrics {
    /// Creates the series of one TON network at zero so they exist before the first poll.
    pub fn init_ton_chain(&self, chain: &str) {
        for gauge in [
            &self.chain_head_block,
            &self.indexed_block,
            &self.confirmed_block,
            &self.chain_halted,
        ] {
            gauge.with_label_values(&[chain]);
        }
        self.chain_head_age_seconds.with_label_values(&[chain]);
        self.listener_progress_timestamp_seconds
            .with_label_values(&[chain]);
        self.chain_stalled.with_label_values(&[chain]);
        for kind in crate::ton::store::TON_TRANSFER_KINDS {
            self.stuck_transfers.with_label_values(&[chain, kind]);
            self.transfer_confirmation_seconds
                .with_label_values(&[chain, kind]);
            for status in TRANSFER_STATUSES {
                self.transfers.with_label_values(&[chain, kind, status]);
            }
        }
        for method in crate::ton::client::LITE_METHODS {
            self.rpc_request_duration_seconds
                .with_label_values(&[chain, method]);
            for outcome in crate::ton::client::LITE_OUTCOMES {
                self.rpc_requests_total
                    .with_label_values(&[chain, method, outcome]);
            }
        }
        self.actor_restarts_total
            .with_label_values(&["ton_listener"]);
    }
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Renders every registered metric in the Prometheus text format.
pub fn render() -> String {
    use prometheus::Encoder;
    let encoder = prometheus::TextEncoder::new();
    let mut buffer = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families.
    if encoder.encode(&prometheus::gather(), &mut buffer).is_err() {
        return String::new();
    }
    String::from_utf8(buffer).unwrap_or_default()
}
