//! The reconciler of one chain: receives chain events from the listener, reads what the store
//! needs from the node before the write (stream records, the finalized block), and hands each
//! event to the store writer, whose transaction records the transfers it creates, confirms or
//! orphans and folds confirmed events into the projections.
//!
//! On a timer it runs the sweeper: it loads the open transfers, asks the node about watched
//! transactions (receipts, revert reasons, nonces), calls the pure [`policy::decide`] for each and
//! sends the steps to the writer. A slower timer compares the virtual-balance projection with
//! `getBalanceSummary` and stores the drift.

pub mod policy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{Address, Bytes, B256};
use alloy::sol_types::SolCall;
use bigdecimal::{BigDecimal, Zero};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use sqlx::{PgPool, Row};

use crate::chain::ChainEvent;
use crate::contracts::{self, getBalanceSummaryCall, getTokenLockCall, DecodeOutcome};
use crate::error::{Error, Result};
use crate::listener::rpc::{CallAnswer, EvmRpc};
use crate::messages::{
    ApplyChainEvent, BatchReads, Checkpoint, Retention, SweepWork, WriteBatch, WriteWork,
};
use crate::metrics::METRICS;
use crate::writer::transfers::TransferStep;
use policy::{
    ChainView, ConfirmationRule, Observation, ReconcilePolicy, TransferState, TransferStatus,
};

/// How long the reconciler waits for the writer to commit one batch.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often retention runs at most (inside a sweep); shorter horizons make it run more often.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// How many node reads (stream records, receipts, balance checks) run at once.
pub const READ_CONCURRENCY: usize = 8;
/// Open transfers one sweep looks at (oldest first); the rest wait for the next pass.
pub const SWEEP_LIMIT: i64 = 20_000;

/// Where "now" comes from: the system clock in production, a controllable one in tests.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// What a reconciler needs to know about its chain.
#[derive(Debug, Clone)]
pub struct ReconcilerSettings {
    /// Chain name.
    pub chain: String,
    /// Confirmation rule and stuck / dropped / stall thresholds.
    pub policy: ReconcilePolicy,
    /// Streams past their end time plus this grace are overdue.
    pub overdue_grace: Duration,
    /// How often the virtual balances are compared with the contract.
    pub drift_check_interval: Duration,
    /// How often the sweeper runs.
    pub sweep_interval: Duration,
    /// Pruning horizons.
    pub retention: Retention,
}

/// The reconciler actor of one chain.
pub struct Reconciler {
    settings: ReconcilerSettings,
    writer: Recipient<WriteBatch>,
    rpc: Arc<EvmRpc>,
    pool: PgPool,
    clock: Arc<dyn Clock>,
    last_head: Option<u64>,
    head_changed_at: DateTime<Utc>,
    sweeping: bool,
    checking_drift: bool,
    last_retention: Option<Instant>,
}

impl Reconciler {
    /// A reconciler writing through `writer`, reading the node through `rpc` and the database
    /// through `pool`, with time from `clock`.
    pub fn new(
        settings: ReconcilerSettings,
        writer: Recipient<WriteBatch>,
        rpc: Arc<EvmRpc>,
        pool: PgPool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let now = clock.now();
        Self {
            settings,
            writer,
            rpc,
            pool,
            clock,
            last_head: None,
            head_changed_at: now,
            sweeping: false,
            checking_drift: false,
            last_retention: None,
        }
    }

    fn note_head(&mut self, head: u64) {
        if self.last_head != Some(head) {
            self.last_head = Some(head);
            self.head_changed_at = self.clock.now();
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        // A slow pass (many watched transactions, a slow node) must not overlap the next one.
        if self.sweeping {
            return;
        }
        self.sweeping = true;
        let now = self.clock.now();
        let stalled = ChainView::is_stalled(self.head_changed_at, now, &self.settings.policy);
        // Every RETENTION_INTERVAL, or as often as the shortest horizon when that is shorter.
        let horizons = &self.settings.retention;
        let interval = RETENTION_INTERVAL
            .min(horizons.block_window)
            .min(horizons.removed_events)
            .min(horizons.delivered_outbox);
        let retention = match self.last_retention {
            Some(at) if at.elapsed() < interval => None,
            _ => {
                self.last_retention = Some(Instant::now());
                Some(self.settings.retention)
            }
        };
        let pass = sweep_pass(
            self.settings.clone(),
            self.rpc.clone(),
            self.pool.clone(),
            self.writer.clone(),
            now,
            stalled,
            retention,
        );
        ctx.spawn(pass.into_actor(self).map(move |result, actor, _| {
            actor.sweeping = false;
            METRICS
                .chain_stalled
                .with_label_values(&[&actor.settings.chain])
                .set(i64::from(stalled));
            if let Err(err) = result {
                tracing::warn!(chain = %actor.settings.chain, error = %err, "sweep pass failed; retrying on the next tick");
            }
        }));
    }

    fn check_drift(&mut self, ctx: &mut Context<Self>) {
        if self.checking_drift {
            return;
        }
        self.checking_drift = true;
        let check = drift_check(
            self.settings.chain.clone(),
            self.rpc.clone(),
            self.pool.clone(),
            self.clock.now(),
        );
        ctx.spawn(check.into_actor(self).map(|result, actor, _| {
            actor.checking_drift = false;
            if let Err(err) = result {
                tracing::warn!(chain = %actor.settings.chain, error = %err, "balance drift check failed; retrying on the next tick");
            }
        }));
    }
}

impl Actor for Reconciler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.settings.sweep_interval, |actor, ctx| actor.sweep(ctx));
        ctx.run_interval(self.settings.drift_check_interval, |actor, ctx| {
            actor.check_drift(ctx)
        });
    }
}

/// Reads `getTokenLock` for every `StreamLockCreated` log of a batch, at the head: the fields
/// kept never change after creation, so no archive state is needed.
async fn read_locks(rpc: &EvmRpc, event: &ChainEvent) -> Result<HashMap<(B256, u64), Value>> {
    let ChainEvent::Committed { logs, .. } = event else {
        return Ok(HashMap::new());
    };
    let wanted: Vec<(B256, u64, Address, B256)> = logs
        .iter()
        .filter_map(|log| match &log.decoded {
            DecodeOutcome::Decoded(d) if d.name == "StreamLockCreated" => {
                let lock = d.fields.get("lockId")?.as_str()?.parse::<B256>().ok()?;
                Some((log.tx_hash, log.log_index, log.address, lock))
            }
            _ => None,
        })
        .collect();
    let calls: Vec<(Address, Bytes)> = wanted
        .iter()
        .map(|(_, _, manager, lock)| {
            (
                *manager,
                Bytes::from(getTokenLockCall { lockId: *lock }.abi_encode()),
            )
        })
        .collect();
    let answers = rpc.call_many(&calls, BlockId::latest()).await?;
    Ok(wanted
        .into_iter()
        .zip(answers)
        .map(|((tx, index, _, _), answer)| {
            let value = match answer {
                CallAnswer::Returned(bytes) => match getTokenLockCall::abi_decode_returns(&bytes) {
                    Ok(record) => contracts::token_lock_json(&record),
                    Err(err) => {
                        json!({"readError": format!("undecodable getTokenLock answer: {err}")})
                    }
                },
                CallAnswer::Reverted { data, message } => {
                    json!({"readError": contracts::revert_reason(&data).unwrap_or(message)})
                }
            };
            ((tx, index), value)
        })
        .collect())
}

async fn finalized_block(rpc: &EvmRpc, rule: ConfirmationRule) -> Result<Option<u64>> {
    match rule {
        ConfirmationRule::Depth(_) => Ok(None),
        ConfirmationRule::Finalized => Ok(rpc
            .header(BlockNumberOrTag::Finalized)
            .await?
            .map(|h| h.block.number)),
    }
}

impl Handler<ApplyChainEvent> for Reconciler {
    type Result = ResponseFuture<Result<Checkpoint>>;

    fn handle(&mut self, msg: ApplyChainEvent, _ctx: &mut Self::Context) -> Self::Result {
        METRICS
            .actor_mailbox_messages
            .with_label_values(&["reconciler"])
            .dec();
        let head = match &msg.0 {
            ChainEvent::Committed { head, .. } | ChainEvent::Reorged { head, .. } => *head,
        };
        self.note_head(head);
        let writer = self.writer.clone();
        let rpc = self.rpc.clone();
        let rule = self.settings.policy.rule;
        let clock = self.clock.clone();
        Box::pin(async move {
            // Node reads happen before the write, never inside its transaction.
            let lock_reads = read_locks(&rpc, &msg.0).await?;
            let finalized = finalized_block(&rpc, rule).await?;
            let reads = BatchReads {
                lock_reads,
                finalized,
                now: clock.now(),
            };
            send_to_writer(
                &writer,
                WriteWork::Chain {
                    event: msg.0,
                    reads,
                },
            )
            .await
        })
    }
}

async fn send_to_writer(writer: &Recipient<WriteBatch>, work: WriteWork) -> Result<Checkpoint> {
    METRICS
        .actor_mailbox_messages
        .with_label_values(&["store_writer"])
        .inc();
    writer
        .send(WriteBatch { work })
        .timeout(WRITE_TIMEOUT)
        .await
        .map_err(|err| Error::Mailbox {
            actor: "store_writer",
            message: err.to_string(),
        })?
}

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    Error::db(op)
}

/// A watched transaction: hash, and the sender and nonce when registered with them.
type WatchedTx = (B256, Option<Address>, Option<u64>);

/// What the node says about one watched transaction.
async fn observe(
    rpc: &EvmRpc,
    hash: B256,
    sender: Option<Address>,
    nonce: Option<u64>,
) -> Result<Observation> {
    match rpc.receipt(hash).await? {
        Some(receipt) => {
            let block = receipt.block_number.unwrap_or_default();
            let success = receipt.status();
            let revert_reason = if success {
                None
            } else {
                revert_reason_of(rpc, hash, block).await
            };
            Ok(Observation::Mined {
                block,
                block_hash: receipt.block_hash.unwrap_or_default().0,
                success,
                revert_reason,
            })
        }
        None => {
            let nonce_taken = match (sender, nonce) {
                (Some(sender), Some(nonce)) => rpc.nonce(sender).await? > nonce,
                _ => false,
            };
            Ok(Observation::NotMined { nonce_taken })
        }
    }
}

/// Replays a reverted transaction with `eth_call` on the state before its block to read the
/// revert reason. `None` when the node cannot say (e.g. that state is pruned).
async fn revert_reason_of(rpc: &EvmRpc, hash: B256, block: u64) -> Option<String> {
    let request = rpc.transaction_request(hash).await.ok()??;
    let at = BlockId::number(block.saturating_sub(1));
    match rpc.call(request, at).await.ok()? {
        CallAnswer::Reverted { data, message } => {
            Some(contracts::revert_reason(&data).unwrap_or(message))
        }
        CallAnswer::Returned(_) => None,
    }
}

/// One sweep: load open transfers, observe watched ones, decide, send the steps.
async fn sweep_pass(
    settings: ReconcilerSettings,
    rpc: Arc<EvmRpc>,
    pool: PgPool,
    writer: Recipient<WriteBatch>,
    now: DateTime<Utc>,
    stalled: bool,
    retention: Option<Retention>,
) -> Result<()> {
    let chain = settings.chain.as_str();
    let rule = settings.policy.rule;
    let tip: Option<i64> =
        sqlx::query_scalar("SELECT max(indexed_to) FROM contract_cursors WHERE chain = $1")
            .bind(chain)
            .fetch_one(&pool)
            .await
            .map_err(db("sweep_load"))?;
    let tip = tip.map_or(0, |t| u64::try_from(t).unwrap_or(0));
    let finalized = finalized_block(&rpc, rule).await?;
    let rows = sqlx::query(
        "SELECT t.id, t.kind, t.status, t.stuck, t.block_number, t.block_hash, t.first_seen_at,
                t.first_seen_block, t.reorged_at, t.tx_hash, w.sender, w.nonce
         FROM transfers t
         LEFT JOIN watched_transactions w ON t.kind = 'watched_tx' AND w.chain = t.chain AND w.tx_hash = t.tx_hash
         WHERE t.chain = $1 AND t.status IN ('pending', 'confirming', 'reorged')
         ORDER BY t.id LIMIT $2",
    )
    .bind(chain)
    .bind(SWEEP_LIMIT)
    .fetch_all(&pool)
    .await
    .map_err(db("sweep_load"))?;

    let view = ChainView {
        tip,
        confirmed: rule.confirmed_height(tip, finalized),
        stalled,
    };
    let to_u64 = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    let states: Vec<(i64, TransferState, Option<WatchedTx>)> = rows
        .into_iter()
        .filter_map(|row| {
            let status = TransferStatus::parse(&row.get::<String, _>("status"))?;
            let block_hash: Option<Vec<u8>> = row.get("block_hash");
            let watched = (row.get::<String, _>("kind") == "watched_tx").then(|| {
                let hash: Option<Vec<u8>> = row.get("tx_hash");
                let sender: Option<Vec<u8>> = row.get("sender");
                (
                    B256::from_slice(&hash.unwrap_or_else(|| vec![0; 32])),
                    sender
                        .filter(|s| s.len() == 20)
                        .map(|s| Address::from_slice(&s)),
                    to_u64(row.get("nonce")),
                )
            });
            let state = TransferState {
                status,
                stuck: row.get("stuck"),
                block: to_u64(row.get("block_number")),
                block_hash: block_hash.and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok()),
                first_seen_at: row.get("first_seen_at"),
                first_seen_block: to_u64(row.get("first_seen_block")),
                reorged_at: row.get("reorged_at"),
                observation: Observation::Unknown,
            };
            Some((row.get::<i64, _>("id"), state, watched))
        })
        .collect();

    // Ask the node about watched transactions that are not final: not in a block yet, orphaned, or
    // in a block that a reorg may have replaced before the listener got there.
    let observed: Vec<(i64, TransferState)> = futures::stream::iter(states)
        .map(|(id, mut state, watched)| {
            let rpc = rpc.clone();
            async move {
                if let (
                    Some((hash, sender, nonce)),
                    TransferStatus::Pending | TransferStatus::Reorged | TransferStatus::Confirming,
                ) = (watched, state.status)
                {
                    state.observation = observe(&rpc, hash, sender, nonce).await?;
                }
                Ok::<_, Error>((id, state))
            }
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    let mut observed = observed;
    observed.sort_by_key(|(id, _)| *id);

    let steps: Vec<TransferStep> = observed
        .iter()
        .flat_map(|(id, state)| {
            policy::decide(state, &view, &settings.policy, now)
                .into_iter()
                .map(|step| TransferStep {
                    transfer_id: *id,
                    step,
                })
        })
        .collect();
    let work = SweepWork {
        steps,
        finalized,
        stalled,
        overdue_grace: settings.overdue_grace,
        retention,
        now,
    };
    send_to_writer(&writer, WriteWork::Sweep(work)).await?;
    Ok(())
}

/// Compares every virtual-balance row with `getBalanceSummary` at the confirmed block the
/// projection stands at, and stores the on-chain values and the drift.
async fn drift_check(
    chain: String,
    rpc: Arc<EvmRpc>,
    pool: PgPool,
    now: DateTime<Utc>,
) -> Result<()> {
    // One snapshot: the confirmed height and the rows as of that height.
    let mut tx = pool.begin().await.map_err(db("drift_check"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(db("drift_check"))?;
    let confirmed: Option<i64> =
        sqlx::query_scalar("SELECT confirmed_block FROM chain_status WHERE chain = $1")
            .bind(&chain)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("drift_check"))?
            .flatten();
    let Some(confirmed) = confirmed else {
        return Ok(());
    };
    let rows = sqlx::query(
        "SELECT manager, user_address, token, total, locked, usage_paid FROM virtual_balances WHERE chain = $1",
    )
    .bind(&chain)
    .fetch_all(&mut *tx)
    .await
    .map_err(db("drift_check"))?;
    tx.commit().await.map_err(db("drift_check"))?;
    let at = BlockId::number(u64::try_from(confirmed).unwrap_or(0));

    let checked: Vec<_> = futures::stream::iter(rows)
        .map(|row| {
            let rpc = rpc.clone();
            async move {
                let manager: Vec<u8> = row.get("manager");
                let user: Vec<u8> = row.get("user_address");
                let token: Vec<u8> = row.get("token");
                let input = Bytes::from(
                    getBalanceSummaryCall {
                        user: Address::from_slice(&user),
                        token: Address::from_slice(&token),
                    }
                    .abi_encode(),
                );
                let answer = rpc
                    .call_contract(Address::from_slice(&manager), input, at)
                    .await?;
                let summary = match answer {
                    CallAnswer::Returned(bytes) => {
                        getBalanceSummaryCall::abi_decode_returns(&bytes).ok()
                    }
                    CallAnswer::Reverted { .. } => None,
                };
                Ok::<_, Error>((row, summary))
            }
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;

    let mut drifted = 0;
    let mut pool_drift = 0;
    for (row, summary) in checked {
        let Some(summary) = summary else { continue };
        let parse =
            |v: alloy::primitives::U256| v.to_string().parse::<BigDecimal>().unwrap_or_default();
        let (total, locked, unlocked) = (
            parse(summary.total),
            parse(summary.locked),
            parse(summary.unlocked),
        );
        let projected_total: BigDecimal = row.get("total");
        let projected_locked: BigDecimal = row.get("locked");
        let usage_paid: BigDecimal = row.get("usage_paid");
        let drift_total = &total - &projected_total;
        let drift_locked = &locked - &projected_locked;
        if !drift_total.is_zero() || !drift_locked.is_zero() {
            drifted += 1;
        }
        if !usage_paid.is_zero() {
            pool_drift += 1;
        }
        sqlx::query(
            "UPDATE virtual_balances SET onchain_total = $5, onchain_locked = $6, onchain_unlocked = $7,
                    checked_block = $8, checked_at = $9, drift_total = $10, drift_locked = $11
             WHERE chain = $1 AND manager = $2 AND user_address = $3 AND token = $4",
        )
        .bind(&chain)
        .bind(row.get::<Vec<u8>, _>("manager"))
        .bind(row.get::<Vec<u8>, _>("user_address"))
        .bind(row.get::<Vec<u8>, _>("token"))
        .bind(&total)
        .bind(&locked)
        .bind(&unlocked)
        .bind(confirmed)
        .bind(now)
        .bind(&drift_total)
        .bind(&drift_locked)
        .execute(&pool)
        .await
        .map_err(db("drift_check"))?;
    }
    METRICS
        .balance_drift_rows
        .with_label_values(&[&chain])
        .set(drifted);
    METRICS
        .balance_usage_pool_drift_rows
        .with_label_values(&[&chain])
        .set(pool_drift);
    if drifted > 0 {
        tracing::warn!(
            chain,
            rows = drifted,
            block = confirmed,
            "virtual balances differ from getBalanceSummary"
        );
    }
    Ok(())
}
