//! The store writer: one actor per chain that commits each batch in one Postgres transaction on
//! a dedicated connection holding the chain's advisory lock, then acknowledges the checkpoint.
//!
//! Writing on the very connection that holds the lock means a writer that lost its lock (its
//! connection died) cannot write anything: the next batch reconnects and must win the lock again.

pub mod store;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use alloy::primitives::Address;
use sqlx::{Connection, PgConnection};

use crate::chain::ChainEvent;
use crate::error::{Error, Result};
use crate::messages::{Checkpoint, WriteBatch};
use crate::metrics::METRICS;

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
}

impl StoreWriter {
    /// A writer using `conn`, which must already hold the chain's advisory lock
    /// (see [`connect_and_lock`]). `roles` names each configured contract's role for metrics.
    pub fn new(
        chain: String,
        database_url: String,
        conn: PgConnection,
        roles: HashMap<Address, String>,
    ) -> Self {
        Self {
            chain,
            database_url,
            conn: Some(conn),
            roles,
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
    event: &ChainEvent,
) -> Result<store::CommitSummary> {
    let op = match event {
        ChainEvent::Committed { .. } => "commit_batch",
        ChainEvent::Reorged { .. } => "unwind_reorg",
    };
    let started = Instant::now();
    let result = async {
        let mut tx = conn.begin().await.map_err(Error::db(op))?;
        let summary = store::apply_event(&mut tx, chain, event).await?;
        tx.commit().await.map_err(Error::db(op))?;
        Ok(summary)
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
        let work = async move {
            let mut conn = match conn {
                Some(conn) => conn,
                None => match connect_and_lock(&database_url, &chain).await {
                    Ok(conn) => conn,
                    Err(err) => return (None, Err(err), msg.event),
                },
            };
            let result = write_in_transaction(&mut conn, &chain, &msg.event).await;
            // A failed transaction may have broken the connection (and with it the lock):
            // drop it and start from a fresh, locked connection next time.
            let conn = if result.is_ok() { Some(conn) } else { None };
            (conn, result, msg.event)
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |(conn, result, event), writer, _ctx| {
                writer.conn = conn;
                let summary = result?;
                writer.record_metrics(&event, &summary);
                Ok(Checkpoint {
                    block: event.checkpoint(),
                })
            },
        )))
    }
}
