//! One write of the store writer, start to end, inside one transaction: the chain event or sweep
//! pass, the transfers it moves, the projections it confirms, history and outbox rows.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use crate::chain::ChainEvent;
use crate::error::{Error, Result};
use crate::messages::{Retention, SweepWork, WriteWork};
use crate::reconciler::policy::ConfirmationRule;
use crate::writer::projections::{self, ProjectionSummary};
use crate::writer::store::{self, CommitSummary};
use crate::writer::transfers::{self, to_i64, HistoryEntry, TransferSummary};

/// What one write changed, for metrics once it has committed.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    /// Events written, by contract and event.
    pub events: CommitSummary,
    /// Transfers confirmed and history rows written.
    pub transfers: TransferSummary,
    /// Confirmed logs folded into projections.
    pub projection: ProjectionSummary,
    /// Highest indexed block after the write.
    pub tip: u64,
    /// Highest confirmed block after the write.
    pub confirmed: Option<u64>,
    /// A reorg deeper than the confirmation threshold was unwound (projections rebuilt).
    pub deep_reorg: bool,
    /// Transfers by (kind, status, count, stuck count), recomputed on sweeps.
    pub gauges: Option<Vec<(String, String, i64, i64)>>,
    /// Active streams flagged overdue, recomputed on sweeps.
    pub overdue_streams: Option<i64>,
}

async fn indexed_tip(conn: &mut PgConnection, chain: &str) -> Result<u64> {
    let tip: Option<i64> =
        sqlx::query_scalar("SELECT max(indexed_to) FROM contract_cursors WHERE chain = $1")
            .bind(chain)
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db("indexed_tip"))?;
    Ok(tip.map_or(0, |t| u64::try_from(t).unwrap_or(0)))
}

async fn stored_confirmed(conn: &mut PgConnection, chain: &str) -> Result<Option<u64>> {
    let confirmed: Option<i64> =
        sqlx::query_scalar("SELECT confirmed_block FROM chain_status WHERE chain = $1")
            .bind(chain)
            .fetch_optional(&mut *conn)
            .await
            .map_err(Error::db("confirmed_block"))?
            .flatten();
    Ok(confirmed.and_then(|c| u64::try_from(c).ok()))
}

/// Confirms what the rule allows at `tip`: transfers, then projections, then the stored height.
#[allow(clippy::too_many_arguments)]
async fn confirm(
    conn: &mut PgConnection,
    chain: &str,
    rule: ConfirmationRule,
    tip: u64,
    finalized: Option<u64>,
    now: DateTime<Utc>,
    history: &mut Vec<HistoryEntry>,
    outcome: &mut WriteOutcome,
) -> Result<()> {
    let Some(confirmed) = rule.confirmed_height(tip, finalized) else {
        return Ok(());
    };
    transfers::promote_confirmed(
        conn,
        chain,
        rule,
        confirmed,
        tip,
        now,
        history,
        &mut outcome.transfers,
    )
    .await?;
    let projected = projections::project_confirmed(conn, chain, confirmed).await?;
    outcome.projection.logs += projected.logs;
    outcome.projection.orphan_updates += projected.orphan_updates;
    sqlx::query(
        "UPDATE chain_status SET confirmed_block = GREATEST(coalesce(confirmed_block, $2), $2), finalized_block = $3
         WHERE chain = $1",
    )
    .bind(chain)
    .bind(to_i64(confirmed))
    .bind(finalized.map(to_i64))
    .execute(&mut *conn)
    .await
    .map_err(Error::db("confirmed_block"))?;
    outcome.confirmed = Some(confirmed);
    Ok(())
}

/// Performs one write inside the caller's transaction.
pub async fn write(
    conn: &mut PgConnection,
    chain: &str,
    rule: ConfirmationRule,
    work: &WriteWork,
) -> Result<WriteOutcome> {
    let mut outcome = WriteOutcome::default();
    let mut history = Vec::new();
    let now = match work {
        WriteWork::Chain { reads, .. } => reads.now,
        WriteWork::Sweep(sweep) => sweep.now,
    };
    match work {
        WriteWork::Chain { event, reads } => {
            let previously_confirmed = stored_confirmed(conn, chain).await?;
            outcome.events = store::apply_event(conn, chain, event).await?;
            outcome.tip = indexed_tip(conn, chain).await?;
            match event {
                ChainEvent::Committed { logs, .. } => {
                    transfers::include_logs(
                        conn,
                        chain,
                        logs,
                        &reads.lock_reads,
                        outcome.tip,
                        now,
                        &mut history,
                    )
                    .await?;
                }
                ChainEvent::Reorged { fork_point, .. } => {
                    transfers::orphan_transfers(conn, chain, *fork_point, now, &mut history)
                        .await?;
                    if previously_confirmed.is_some_and(|confirmed| confirmed > *fork_point) {
                        // The reorg replaced confirmed blocks: projections built from them are
                        // rebuilt from the canonical logs up to the fork point.
                        outcome.deep_reorg = true;
                        sqlx::query(
                            "UPDATE chain_status SET confirmed_block = $2, deep_reorgs = deep_reorgs + 1 WHERE chain = $1",
                        )
                        .bind(chain)
                        .bind(to_i64(*fork_point))
                        .execute(&mut *conn)
                        .await
                        .map_err(Error::db("deep_reorg"))?;
                        let rebuilt = projections::rebuild(conn, chain, *fork_point).await?;
                        tracing::error!(chain, fork_point, confirmed = previously_confirmed, logs = rebuilt.logs,
                            "reorg deeper than the confirmation threshold: projections rebuilt from canonical events");
                    }
                }
            }
            confirm(
                conn,
                chain,
                rule,
                outcome.tip,
                reads.finalized,
                now,
                &mut history,
                &mut outcome,
            )
            .await?;
        }
        WriteWork::Sweep(sweep) => {
            outcome.tip = indexed_tip(conn, chain).await?;
            transfers::apply_steps(
                conn,
                chain,
                &sweep.steps,
                outcome.tip,
                now,
                &mut history,
                &mut outcome.transfers,
            )
            .await?;
            confirm(
                conn,
                chain,
                rule,
                outcome.tip,
                sweep.finalized,
                now,
                &mut history,
                &mut outcome,
            )
            .await?;
            housekeeping(conn, chain, sweep, &mut outcome).await?;
        }
    }
    outcome.transfers.history_rows = transfers::write_history(conn, chain, history, now).await?;
    Ok(outcome)
}

/// The sweep's periodic work: stalled flag, overdue streams, gauges, retention.
async fn housekeeping(
    conn: &mut PgConnection,
    chain: &str,
    sweep: &SweepWork,
    outcome: &mut WriteOutcome,
) -> Result<()> {
    sqlx::query(
        "UPDATE chain_status SET stalled = $2,
                stalled_since = CASE WHEN $2 THEN coalesce(stalled_since, $3) ELSE NULL END
         WHERE chain = $1",
    )
    .bind(chain)
    .bind(sweep.stalled)
    .bind(sweep.now)
    .execute(&mut *conn)
    .await
    .map_err(Error::db("stalled"))?;

    // Overdue is judged against chain time (the newest indexed block), so it follows the chain,
    // not the clock of the machine chainsync runs on.
    let chain_time: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT timestamp FROM evm_blocks WHERE chain = $1 ORDER BY number DESC LIMIT 1",
    )
    .bind(chain)
    .fetch_optional(&mut *conn)
    .await
    .map_err(Error::db("chain_time"))?;
    if let Some(chain_time) = chain_time {
        let overdue =
            projections::mark_overdue(conn, chain, sweep.overdue_grace, chain_time, sweep.now)
                .await?;
        let events: Vec<serde_json::Value> = overdue
            .iter()
            .map(|(tx, index, lock)| {
                serde_json::json!({
                    "stream": {"tx_hash": format!("0x{}", hex::encode(tx)), "log_index": index},
                    "lock_id": format!("0x{}", hex::encode(lock)),
                })
            })
            .collect();
        transfers::write_events(conn, chain, "stream.overdue", events, sweep.now).await?;
    }

    let overdue: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM streams WHERE chain = $1 AND status = 'active' AND overdue_since IS NOT NULL",
    )
    .bind(chain)
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::db("overdue_gauge"))?;
    outcome.overdue_streams = Some(overdue);

    let rows = sqlx::query(
        "SELECT kind, status, count(*) AS total, count(*) FILTER (WHERE stuck) AS stuck
         FROM transfers WHERE chain = $1 GROUP BY kind, status",
    )
    .bind(chain)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("transfer_gauges"))?;
    outcome.gauges = Some(
        rows.into_iter()
            .map(|r| {
                (
                    r.get("kind"),
                    r.get("status"),
                    r.get("total"),
                    r.get("stuck"),
                )
            })
            .collect(),
    );

    if let Some(retention) = sweep.retention {
        prune(conn, chain, outcome.tip, &retention, sweep.now).await?;
    }
    Ok(())
}

/// Retention: the block window below the reorg window, removed logs and delivered outbox rows
/// older than their horizons.
async fn prune(
    conn: &mut PgConnection,
    chain: &str,
    tip: u64,
    retention: &Retention,
    now: DateTime<Utc>,
) -> Result<()> {
    let horizon = |d: std::time::Duration| now - chrono::Duration::from_std(d).unwrap_or_default();
    let blocks =
        sqlx::query("DELETE FROM evm_blocks WHERE chain = $1 AND number < $2 AND timestamp < $3")
            .bind(chain)
            .bind(to_i64(tip.saturating_sub(retention.reorg_window)))
            .bind(horizon(retention.block_window))
            .execute(&mut *conn)
            .await
            .map_err(Error::db("prune"))?
            .rows_affected();
    let removed =
        sqlx::query("DELETE FROM evm_logs WHERE chain = $1 AND removed AND removed_at < $2")
            .bind(chain)
            .bind(horizon(retention.removed_events))
            .execute(&mut *conn)
            .await
            .map_err(Error::db("prune"))?
            .rows_affected();
    let delivered = sqlx::query("DELETE FROM outbox WHERE chain = $1 AND delivered_at < $2")
        .bind(chain)
        .bind(horizon(retention.delivered_outbox))
        .execute(&mut *conn)
        .await
        .map_err(Error::db("prune"))?
        .rows_affected();
    if blocks + removed + delivered > 0 {
        tracing::info!(
            chain,
            blocks,
            removed_logs = removed,
            delivered_outbox = delivered,
            "retention pass pruned rows"
        );
    }
    Ok(())
}
