//! The store writer: one actor per chain that commits each batch in one Postgres transaction on
//! a dedicated connection holding the chain's advisory lock, then acknowledges the checkpoint.
//!
//! Writing on the very connection that holds the lock means a writer that lost its lock (its
//! connection died) cannot write anything: the next batch reconnects and must win the lock again.

pub mod projections;
pub mod reconcile;
pub mod store;
pub mod transfers;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use alloy::primitives::Address;
use sqlx::{Connection, PgConnection};

use crate::chain::ChainEvent;
use crate::error::{Error, Result};
use crate::messages::{Checkpoint, WriteBatch, WriteWork};
use crate::metrics::METRICS;
use crate::reconciler::policy::ConfirmationRule;
use reconcile::WriteOutcome;

/// How often a standby instance asks whether the active one released the chain's lock.
pub const STANDBY_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The advisory-lock key of a chain: stable across processes and versions.
fn lock_key(chain: &str) -> String {
    format!("chainsync:chain:{chain}")
}

/// Opens a connection and waits until it holds the chain's advisory lock. While another
/// instance holds it, this instance is a hot standby and logs that once.
pub async fn connect_and_lock(database_url: &str, chain: &str) -> Result<PgConnection> {
    let mut conn = PgConnection::connect(database_url)
        .await
        .map_err(Error::db("connect"))?;
    let mut announced = false;
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(lock_key(chain))
            .fetch_one(&mut conn)
            .await
            .map_err(Error::db("advisory_lock"))?;
        if locked {
            if announced {
                tracing::info!(chain, "took over as the active writer");
            }
            return Ok(conn);
        }
        if !announced {
            tracing::info!(
                chain,
                "another chainsync instance is indexing this chain; waiting as hot standby"
            );
            announced = true;
        }
        tokio::time::sleep(STANDBY_POLL_INTERVAL).await;
    }
}

/// The store-writer actor of one chain.
pub struct StoreWriter {
    chain: String,
    database_url: String,
    conn: Option<PgConnection>,
    roles: HashMap<Address, String>,
    rule: ConfirmationRule,
    /// Logs written by this writer, and the count at which the next ANALYZE is due.
    logs_written: u64,
    next_analyze_at: u64,
}

/// Logs written before the first ANALYZE of the tables a backfill grows.
pub const FIRST_ANALYZE_AT: u64 = 5_000;

/// The tables whose planner statistics a backfill makes stale.
/// (Only those the batch statements join against; the append-only ones are read by key.)
const GROWING_TABLES: &str = "ANALYZE transfers, streams, virtual_balances";

impl StoreWriter {
    /// A writer using `conn`, which must already hold the chain's advisory lock
    /// (see [`connect_and_lock`]). `roles` names each configured contract's role for metrics;
    /// `rule` says when a block is confirmed.
    pub fn new(
        chain: String,
        database_url: String,
        conn: PgConnection,
        roles: HashMap<Address, String>,
        rule: ConfirmationRule,
    ) -> Self {
        Self {
            chain,
            database_url,
            conn: Some(conn),
            roles,
            rule,
            logs_written: 0,
            next_analyze_at: FIRST_ANALYZE_AT,
        }
    }

    fn record_outcome(&mut self, work: &WriteWork, outcome: &WriteOutcome) {
        if let WriteWork::Chain { event, .. } = work {
            self.record_metrics(event, &outcome.events);
        }
        let chain = self.chain.as_str();
        if let Some(confirmed) = outcome.confirmed {
            METRICS
                .confirmed_block
                .with_label_values(&[chain])
                .set(i64::try_from(confirmed).unwrap_or(i64::MAX));
        }
        for (kind, seconds) in &outcome.transfers.confirmation_seconds {
            METRICS
                .transfer_confirmation_seconds
                .with_label_values(&[chain, kind])
                .observe(*seconds);
        }
        if outcome.deep_reorg {
            METRICS.deep_reorgs_total.with_label_values(&[chain]).inc();
        }
        if outcome.projection.orphan_updates > 0 {
            METRICS
                .projection_orphan_updates_total
                .with_label_values(&[chain])
                .inc_by(outcome.projection.orphan_updates);
        }
        if let Some(overdue) = outcome.overdue_streams {
            METRICS
                .overdue_streams
                .with_label_values(&[chain])
                .set(overdue);
        }
        if let Some(gauges) = &outcome.gauges {
            // Series of every known (kind, status) exist from start-up; reset them to 0 first
            // so a status that emptied reads 0 rather than its last count.
            for kind in crate::metrics::EVM_TRANSFER_KINDS {
                for status in crate::metrics::TRANSFER_STATUSES {
                    METRICS
                        .transfers
                        .with_label_values(&[chain, kind, status])
                        .set(0);
                }
                METRICS
                    .stuck_transfers
                    .with_label_values(&[chain, kind])
                    .set(0);
            }
            let mut stuck: HashMap<&str, i64> = HashMap::new();
            for (kind, status, count, stuck_count) in gauges {
                METRICS
                    .transfers
                    .with_label_values(&[chain, kind, status])
                    .set(*count);
                *stuck.entry(kind.as_str()).or_default() += stuck_count;
            }
            for (kind, count) in stuck {
                METRICS
                    .stuck_transfers
                    .with_label_values(&[chain, kind])
                    .set(count);
            }
        }
    }

    fn record_metrics(&mut self, event: &ChainEvent, summary: &store::CommitSummary) {
        if let ChainEvent::Committed { discovered, .. } = event {
            for contract in discovered {
                self.roles
                    .entry(contract.address)
                    .or_insert_with(|| "producer".to_owned());
            }
        }
        for ((address, label), count) in &summary.events {
            let role = self.roles.get(address).map_or("unknown", String::as_str);
            METRICS
                .events_total
                .with_label_values(&[self.chain.as_str(), role, label])
                .inc_by(*count);
            if matches!(
                *label,
                "Upgraded" | "Paused" | "Unpaused" | "OwnershipTransferred"
            ) {
                METRICS
                    .admin_events_total
                    .with_label_values(&[self.chain.as_str(), label])
                    .inc_by(*count);
            }
        }
        match event {
            // The head gauge belongs to the listener, which sees every head, not only
            // the ones that came with a batch.
            ChainEvent::Committed { cursor, .. } => {
                METRICS
                    .indexed_block
                    .with_label_values(&[&self.chain])
                    .set(i64::try_from(cursor.to_block).unwrap_or(i64::MAX));
            }
            ChainEvent::Reorged { fork_point, .. } => {
                METRICS.reorgs_total.with_label_values(&[&self.chain]).inc();
                METRICS
                    .reorg_depth_blocks
                    .with_label_values(&[&self.chain])
                    .observe(event.reorg_depth() as f64);
                METRICS
                    .indexed_block
                    .with_label_values(&[&self.chain])
                    .set(i64::try_from(*fork_point).unwrap_or(i64::MAX));
            }
        }
    }
}

impl Actor for StoreWriter {
    type Context = Context<Self>;
}

async fn write_in_transaction(
    conn: &mut PgConnection,
    chain: &str,
    rule: ConfirmationRule,
    work: &WriteWork,
) -> Result<WriteOutcome> {
    let op = match work {
        WriteWork::Chain {
            event: ChainEvent::Committed { .. },
            ..
        } => "commit_batch",
        WriteWork::Chain {
            event: ChainEvent::Reorged { .. },
            ..
        } => "unwind_reorg",
        WriteWork::Sweep(_) => "sweep",
    };
    let started = Instant::now();
    let result = async {
        let mut tx = conn.begin().await.map_err(Error::db(op))?;
        let outcome = reconcile::write(&mut tx, chain, rule, work).await?;
        tx.commit().await.map_err(Error::db(op))?;
        Ok(outcome)
    }
    .await;
    METRICS
        .db_transaction_duration_seconds
        .with_label_values(&[op])
        .observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        METRICS.db_errors_total.with_label_values(&[op]).inc();
    }
    result
}

impl Handler<WriteBatch> for StoreWriter {
    type Result = AtomicResponse<Self, Result<Checkpoint>>;

    fn handle(&mut self, msg: WriteBatch, _ctx: &mut Self::Context) -> Self::Result {
        METRICS
            .actor_mailbox_messages
            .with_label_values(&["store_writer"])
            .dec();
        let conn = self.conn.take();
        let chain = self.chain.clone();
        let database_url = self.database_url.clone();
        let rule = self.rule;
        if let WriteWork::Chain {
            event: ChainEvent::Committed { logs, .. },
            ..
        } = &msg.work
        {
            self.logs_written += logs.len() as u64;
        }
        // A backfill grows its tables from nothing faster than autovacuum re-analyzes them, and
        // plans made on empty-table statistics turn the batch joins quadratic. Re-analyze each
        // time the rows written double (a handful of times over any backfill).
        let analyze = self.logs_written >= self.next_analyze_at;
        if analyze {
            self.next_analyze_at = self.logs_written.saturating_mul(2);
        }
        let work = async move {
            let mut conn = match conn {
                Some(conn) => conn,
                None => match connect_and_lock(&database_url, &chain).await {
                    Ok(conn) => conn,
                    Err(err) => return (None, Err(err), msg.work),
                },
            };
            let result = write_in_transaction(&mut conn, &chain, rule, &msg.work).await;
            if analyze && result.is_ok() {
                let started = Instant::now();
                if let Err(err) = sqlx::query(GROWING_TABLES).execute(&mut conn).await {
                    tracing::warn!(chain = %chain, error = %err, "ANALYZE failed; plans may be slow until autovacuum runs");
                } else {
                    tracing::debug!(chain = %chain, took = ?started.elapsed(), "tables analyzed");
                }
            }
            // A failed transaction may have broken the connection (and with it the lock):
            // drop it and start from a fresh, locked connection next time.
            let conn = if result.is_ok() { Some(conn) } else { None };
            (conn, result, msg.work)
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |(conn, result, work), writer, _ctx| {
                writer.conn = conn;
                let outcome = result?;
                writer.record_outcome(&work, &outcome);
                Ok(Checkpoint {
                    block: match &work {
                        WriteWork::Chain { event, .. } => event.checkpoint(),
                        WriteWork::Sweep(_) => outcome.tip,
                    },
                })
            },
        )))
    }
}
