//! Transfers, their history and the outbox, written inside the store writer's transaction.
//!
//! Forward writes and their unwinds sit together: [`include_logs`] / [`orphan_transfers`], and
//! [`promote_confirmed`] (undone by [`orphan_transfers`] for a reorg deeper than the threshold).
//!
//! History and outbox rows of one batch are ordered by the block at which each transition
//! happened, then by phase (orphaned, included, confirmed), then by the transfer's position in the
//! chain. Every batch emits exactly the transitions whose block lies in the range it covers, so
//! a chain's history is numbered the same however the blocks were batched — which is what makes a
//! run killed and restarted end with the same ids as an uninterrupted one.

use std::collections::HashMap;

use alloy::primitives::{Address, B256};
use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, Row};

use crate::chain::RawLog;
use crate::contracts::DecodeOutcome;
use crate::error::{Error, Result};
use crate::reconciler::policy::{ConfirmationRule, Step, TransferStatus};

/// The transfer kinds derived from manager logs, by event name.
pub fn kind_of_event(event: &str) -> Option<&'static str> {
    match event {
        "StreamLockCreated" => Some("stream_lock_created"),
        "StreamSettled" => Some("stream_settled"),
        "PartialClaim" => Some("partial_claim"),
        "EmergencyWithdraw" => Some("emergency_withdraw"),
        "BalanceWithdrawn" => Some("balance_withdrawn"),
        _ => None,
    }
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Phases of the order key: within one block, orphaning comes first, then inclusion, then
/// confirmation, then the stuck flag.
pub(crate) const PHASE_ORPHANED: u8 = 0;
pub(crate) const PHASE_INCLUDED: u8 = 1;
pub(crate) const PHASE_SETTLED: u8 = 2;
pub(crate) const PHASE_FLAGGED: u8 = 3;

/// One history row (and its outbox event) to write.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The transfer.
    pub transfer_id: i64,
    /// Its kind and identity (carried into the outbox payload).
    pub kind: String,
    /// See `kind`.
    pub identity: String,
    /// Status before (None when the transfer is created by this entry).
    pub from: Option<TransferStatus>,
    /// Status after.
    pub to: TransferStatus,
    /// Stuck flag after.
    pub stuck: bool,
    /// Why.
    pub reason: String,
    /// The block that caused it.
    pub block: Option<u64>,
    /// Outbox topic.
    pub topic: &'static str,
    /// (block of the transition, phase, transfer block, transfer log index, transfer id).
    pub order: (u64, u8, u64, u64, i64),
}

/// What reconciling one batch changed (for metrics once the transaction has committed).
#[derive(Debug, Default, Clone)]
pub struct TransferSummary {
    /// Seconds from first seen to confirmed, per kind, for each transfer confirmed.
    pub confirmation_seconds: Vec<(String, f64)>,
    /// History rows written.
    pub history_rows: usize,
}

/// Allocates `transfers` transfer ids and `events` history/outbox sequence numbers from the
/// chain's transactional counters; returns the first of each.
pub(crate) async fn allocate(
    conn: &mut PgConnection,
    chain: &str,
    transfers: usize,
    events: usize,
) -> Result<(i64, i64)> {
    let row = sqlx::query(
        "INSERT INTO chain_sequences (chain, next_transfer_id, next_event_seq) VALUES ($1, 1 + $2, 1 + $3)
         ON CONFLICT (chain) DO UPDATE
           SET next_transfer_id = chain_sequences.next_transfer_id + $2,
               next_event_seq = chain_sequences.next_event_seq + $3
         RETURNING next_transfer_id - $2 AS first_transfer, next_event_seq - $3 AS first_event",
    )
    .bind(chain)
    .bind(i64::try_from(transfers).unwrap_or(i64::MAX))
    .bind(i64::try_from(events).unwrap_or(i64::MAX))
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::db("allocate_ids"))?;
    Ok((row.get("first_transfer"), row.get("first_event")))
}

/// Writes history rows and one outbox event per row, numbered in their canonical order.
pub async fn write_history(
    conn: &mut PgConnection,
    chain: &str,
    mut entries: Vec<HistoryEntry>,
    now: DateTime<Utc>,
) -> Result<usize> {
    if entries.is_empty() {
        return Ok(0);
    }
    entries.sort_by_key(|e| e.order);
    let (_, first_seq) = allocate(conn, chain, 0, entries.len()).await?;
    let count = entries.len();
    let seqs: Vec<i64> = (0..count).map(|i| first_seq + to_i64(i as u64)).collect();
    let ids: Vec<i64> = entries.iter().map(|e| e.transfer_id).collect();
    let froms: Vec<Option<&str>> = entries
        .iter()
        .map(|e| e.from.map(TransferStatus::as_str))
        .collect();
    let tos: Vec<&str> = entries.iter().map(|e| e.to.as_str()).collect();
    let stuck: Vec<bool> = entries.iter().map(|e| e.stuck).collect();
    let reasons: Vec<&str> = entries.iter().map(|e| e.reason.as_str()).collect();
    let blocks: Vec<Option<i64>> = entries.iter().map(|e| e.block.map(to_i64)).collect();
    let topics: Vec<&str> = entries.iter().map(|e| e.topic).collect();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    let identities: Vec<&str> = entries.iter().map(|e| e.identity.as_str()).collect();
    // One statement writes both: the history row and its outbox event. The event carries no join:
    // consumers (and the notifier) read the transfer's current row from v_transfers by
    // (chain, transfer_id) for amounts, addresses and details.
    sqlx::query(
        "WITH h AS (
             SELECT * FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bool[], $7::text[],
                                  $8::bigint[], $10::text[], $11::text[], $12::text[])
               AS h (seq, transfer_id, from_status, to_status, stuck, reason, block_number, topic, kind, identity)),
         history AS (
             INSERT INTO transfer_history (chain, seq, transfer_id, from_status, to_status, stuck, reason,
                                           block_number, at)
             SELECT $1, seq, transfer_id, from_status, to_status, stuck, reason, block_number, $9 FROM h)
         INSERT INTO outbox (chain, seq, topic, transfer_id, payload, created_at)
         SELECT $1, h.seq, h.topic, h.transfer_id,
                jsonb_build_object(
                    'id', $1 || ':' || h.seq, 'topic', h.topic, 'chain', $1,
                    'transfer_id', h.transfer_id, 'kind', h.kind, 'identity', h.identity,
                    'from_status', h.from_status, 'status', h.to_status, 'stuck', h.stuck,
                    'reason', h.reason, 'block_number', h.block_number, 'at', $9),
                $9
         FROM h",
    )
    .bind(chain)
    .bind(&seqs)
    .bind(&ids)
    .bind(&froms)
    .bind(&tos)
    .bind(&stuck)
    .bind(&reasons)
    .bind(&blocks)
    .bind(now)
    .bind(&topics)
    .bind(&kinds)
    .bind(&identities)
    .execute(&mut *conn)
    .await
    .map_err(Error::db("write_history"))?;
    Ok(count)
}

/// Writes outbox events that are not transfer transitions (e.g. `stream.overdue`), numbered after
/// everything else of the transaction so far.
pub async fn write_events(
    conn: &mut PgConnection,
    chain: &str,
    topic: &str,
    payloads: Vec<Value>,
    now: DateTime<Utc>,
) -> Result<()> {
    if payloads.is_empty() {
        return Ok(());
    }
    let (_, first_seq) = allocate(conn, chain, 0, payloads.len()).await?;
    let seqs: Vec<i64> = (0..payloads.len())
        .map(|i| first_seq + to_i64(i as u64))
        .collect();
    sqlx::query(
        "INSERT INTO outbox (chain, seq, topic, payload, created_at)
         SELECT $1, x.seq, $3, jsonb_build_object('id', $1 || ':' || x.seq, 'topic', $3, 'chain', $1, 'at', $5) || x.payload, $5
         FROM UNNEST($2::bigint[], $4::jsonb[]) AS x (seq, payload)",
    )
    .bind(chain)
    .bind(&seqs)
    .bind(topic)
    .bind(&payloads)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(Error::db("write_outbox"))?;
    Ok(())
}

pub(crate) fn topic_for(status: TransferStatus) -> &'static str {
    match status {
        TransferStatus::Pending => "transfer.pending",
        TransferStatus::Confirming => "transfer.confirming",
        TransferStatus::Confirmed => "transfer.confirmed",
        TransferStatus::Failed => "transfer.failed",
        TransferStatus::Reorged => "transfer.reorged",
    }
}

fn address_field(fields: &Value, name: &str) -> Option<Vec<u8>> {
    let text = fields.get(name)?.as_str()?;
    text.parse::<Address>().ok().map(|a| a.to_vec())
}

fn amount_field(fields: &Value, name: &str) -> Option<BigDecimal> {
    fields.get(name)?.as_str()?.parse().ok()
}

/// A transfer-kind log of a batch, with its identity.
struct LoggedTransfer<'a> {
    log: &'a RawLog,
    kind: &'static str,
    identity: String,
    fields: &'a Value,
}

/// Transfers derived from the batch's logs. The identity is `<tx_hash>:<n>`, n counting the
/// logs of that kind in the transaction, so a transaction moved to another block by a reorg
/// keeps its transfers.
fn logged_transfers(logs: &[RawLog]) -> Vec<LoggedTransfer<'_>> {
    let mut sorted: Vec<&RawLog> = logs.iter().collect();
    sorted.sort_by_key(|l| (l.block_number, l.log_index));
    let mut ordinal: HashMap<(B256, &'static str), u32> = HashMap::new();
    let mut out = Vec::new();
    for log in sorted {
        let DecodeOutcome::Decoded(decoded) = &log.decoded else {
            continue;
        };
        let Some(kind) = kind_of_event(decoded.name) else {
            continue;
        };
        let n = ordinal.entry((log.tx_hash, kind)).or_default();
        let identity = format!("{:#x}:{}", log.tx_hash, n);
        *n += 1;
        out.push(LoggedTransfer {
            log,
            kind,
            identity,
            fields: &decoded.fields,
        });
    }
    out
}

/// A stored transfer a batch's log refers to.
struct Existing {
    id: i64,
    status: String,
    block_hash: Option<Vec<u8>>,
}

/// Records the transfers of a committed batch: new ones are inserted as `confirming` (they are in
/// a block), reorged ones seen again are re-included. `lock_reads` maps a creating log
/// (tx hash, log index) to what `getTokenLock` returned, kept in the transfer's details.
pub async fn include_logs(
    conn: &mut PgConnection,
    chain: &str,
    logs: &[RawLog],
    lock_reads: &HashMap<(B256, u64), Value>,
    tip: u64,
    now: DateTime<Utc>,
    history: &mut Vec<HistoryEntry>,
) -> Result<()> {
    let found = logged_transfers(logs);
    if found.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = found.iter().map(|t| t.kind).collect();
    let identities: Vec<&str> = found.iter().map(|t| t.identity.as_str()).collect();
    // By (kind, identity): the unique index, so the lookup does not grow with the table.
    let rows = sqlx::query(
        "SELECT t.id, t.kind, t.identity, t.status, t.block_hash FROM transfers t
         JOIN UNNEST($2::text[], $3::text[]) AS x (kind, identity)
           ON t.chain = $1 AND t.kind = x.kind AND t.identity = x.identity
         FOR UPDATE OF t",
    )
    .bind(chain)
    .bind(&kinds)
    .bind(&identities)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("include_logs"))?;
    let mut existing: HashMap<(String, String), Existing> = HashMap::new();
    for row in rows {
        existing.insert(
            (row.get("kind"), row.get("identity")),
            Existing {
                id: row.get("id"),
                status: row.get("status"),
                block_hash: row.get("block_hash"),
            },
        );
    }

    let new: Vec<&LoggedTransfer<'_>> = found
        .iter()
        .filter(|t| !existing.contains_key(&(t.kind.to_owned(), t.identity.clone())))
        .collect();
    let (first_id, _) = if new.is_empty() {
        (0, 0)
    } else {
        allocate(conn, chain, new.len(), 0).await?
    };

    let mut ids = Vec::new();
    let mut kinds = Vec::new();
    let mut idents = Vec::new();
    let mut tx_hashes = Vec::new();
    let mut block_hashes = Vec::new();
    let mut block_numbers = Vec::new();
    let mut log_indexes = Vec::new();
    let mut contracts = Vec::new();
    let mut tokens: Vec<Option<Vec<u8>>> = Vec::new();
    let mut froms: Vec<Option<Vec<u8>>> = Vec::new();
    let mut tos: Vec<Option<Vec<u8>>> = Vec::new();
    let mut amounts: Vec<Option<BigDecimal>> = Vec::new();
    let mut details: Vec<Value> = Vec::new();
    for (offset, t) in new.iter().enumerate() {
        let id = first_id + to_i64(offset as u64);
        let f = t.fields;
        let (from, to, token, amount) = match t.kind {
            "stream_lock_created" => (
                address_field(f, "user"),
                address_field(f, "recipient"),
                address_field(f, "token"),
                amount_field(f, "totalAmount"),
            ),
            "stream_settled" => (
                address_field(f, "user"),
                address_field(f, "recipient"),
                None,
                amount_field(f, "settledAmount"),
            ),
            "partial_claim" => (
                None,
                address_field(f, "recipient"),
                None,
                amount_field(f, "amount"),
            ),
            "emergency_withdraw" => (
                Some(t.log.address.to_vec()),
                address_field(f, "user"),
                None,
                amount_field(f, "amount"),
            ),
            _ => (
                Some(t.log.address.to_vec()),
                address_field(f, "user"),
                address_field(f, "token"),
                amount_field(f, "amount"),
            ),
        };
        let detail = detail_of(t, lock_reads);
        ids.push(id);
        kinds.push(t.kind);
        idents.push(t.identity.as_str());
        tx_hashes.push(t.log.tx_hash.to_vec());
        block_hashes.push(t.log.block_hash.to_vec());
        block_numbers.push(to_i64(t.log.block_number));
        log_indexes.push(i32::try_from(t.log.log_index).unwrap_or(i32::MAX));
        contracts.push(t.log.address.to_vec());
        tokens.push(token);
        froms.push(from);
        tos.push(to);
        amounts.push(amount);
        details.push(detail);
        history.push(HistoryEntry {
            transfer_id: id,
            from: None,
            to: TransferStatus::Confirming,
            kind: t.kind.to_owned(),
            identity: t.identity.clone(),
            stuck: false,
            reason: "included".to_owned(),
            block: Some(t.log.block_number),
            topic: topic_for(TransferStatus::Confirming),
            order: (
                t.log.block_number,
                PHASE_INCLUDED,
                t.log.block_number,
                t.log.log_index,
                id,
            ),
        });
    }
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO transfers (chain, id, kind, identity, status, tx_hash, block_hash, block_number,
                                    log_index, contract, token, from_address, to_address, amount, details,
                                    first_seen_at, first_seen_block, included_at, updated_at)
             SELECT $1, x.id, x.kind, x.identity, 'confirming', x.tx_hash, x.block_hash, x.block_number,
                    x.log_index, x.contract, x.token, x.from_address, x.to_address, x.amount, x.details,
                    $15, $16, $15, $15
             FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::bytea[], $6::bytea[], $7::bigint[],
                         $8::int[], $9::bytea[], $10::bytea[], $11::bytea[], $12::bytea[], $13::numeric[],
                         $14::jsonb[])
               AS x (id, kind, identity, tx_hash, block_hash, block_number, log_index, contract, token,
                     from_address, to_address, amount, details)",
        )
        .bind(chain)
        .bind(&ids)
        .bind(&kinds)
        .bind(&idents)
        .bind(&tx_hashes)
        .bind(&block_hashes)
        .bind(&block_numbers)
        .bind(&log_indexes)
        .bind(&contracts)
        .bind(&tokens)
        .bind(&froms)
        .bind(&tos)
        .bind(&amounts)
        .bind(&details)
        .bind(now)
        .bind(to_i64(tip))
        .execute(&mut *conn)
        .await
        .map_err(Error::db("insert_transfers"))?;
    }

    // Seen again after a reorg (or in a retried batch): re-include when the block changed.
    for t in &found {
        let Some(Existing {
            id,
            status,
            block_hash,
        }) = existing.get(&(t.kind.to_owned(), t.identity.clone()))
        else {
            continue;
        };
        let same_block = block_hash.as_deref() == Some(t.log.block_hash.as_slice());
        let status = TransferStatus::parse(status);
        if status != Some(TransferStatus::Reorged) && same_block {
            continue;
        }
        let Some(from) = status.filter(|s| s.can_become(TransferStatus::Confirming)) else {
            continue;
        };
        // The details follow the block now canonical: a stream's `getTokenLock` record read on the
        // orphaned block carried that block's timestamp as its start.
        sqlx::query(
            "UPDATE transfers SET status = 'confirming', stuck = false, block_hash = $3, block_number = $4,
                    log_index = $5, included_at = $6, reorged_at = NULL, updated_at = $6,
                    details = details || $7
             WHERE chain = $1 AND id = $2",
        )
        .bind(chain)
        .bind(id)
        .bind(t.log.block_hash.to_vec())
        .bind(to_i64(t.log.block_number))
        .bind(i32::try_from(t.log.log_index).unwrap_or(i32::MAX))
        .bind(now)
        .bind(detail_of(t, lock_reads))
        .execute(&mut *conn)
        .await
        .map_err(Error::db("reinclude_transfer"))?;
        history.push(HistoryEntry {
            transfer_id: *id,
            from: Some(from),
            kind: t.kind.to_owned(),
            identity: t.identity.clone(),
            to: TransferStatus::Confirming,
            stuck: false,
            reason: "reincluded".to_owned(),
            block: Some(t.log.block_number),
            topic: topic_for(TransferStatus::Confirming),
            order: (
                t.log.block_number,
                PHASE_INCLUDED,
                t.log.block_number,
                t.log.log_index,
                *id,
            ),
        });
    }
    Ok(())
}

/// A logged transfer's details: the event's fields, plus the `getTokenLock` record read for a
/// creating log (key `lock`).
fn detail_of(t: &LoggedTransfer<'_>, lock_reads: &HashMap<(B256, u64), Value>) -> Value {
    let mut detail = t.fields.clone();
    if let (Some(read), Some(map)) = (
        lock_reads.get(&(t.log.tx_hash, t.log.log_index)),
        detail.as_object_mut(),
    ) {
        map.insert("lock".to_owned(), read.clone());
    }
    detail
}

/// Promotes every `confirming` transfer at or below `confirmed` to `confirmed`. Under a depth rule
/// the history names the threshold block (`block + n - 1`), so it does not depend on how far
/// past it the batch that noticed went.
#[allow(clippy::too_many_arguments)]
pub async fn promote_confirmed(
    conn: &mut PgConnection,
    chain: &str,
    rule: ConfirmationRule,
    confirmed: u64,
    tip: u64,
    now: DateTime<Utc>,
    history: &mut Vec<HistoryEntry>,
    summary: &mut TransferSummary,
) -> Result<()> {
    let rows = sqlx::query(
        "UPDATE transfers t SET status = 'confirmed', stuck = false, confirmed_at = $3, updated_at = $3
         WHERE chain = $1 AND status = 'confirming' AND block_number <= $2
           -- A watched transaction's block comes from its receipt: confirm it only while that
           -- block is still the canonical one chainsync indexed.
           AND (kind <> 'watched_tx' OR NOT EXISTS (
                SELECT 1 FROM evm_blocks b WHERE b.chain = t.chain AND b.number = t.block_number
                                              AND b.hash <> t.block_hash))
         RETURNING id, kind, identity, block_number, log_index, first_seen_at",
    )
    .bind(chain)
    .bind(to_i64(confirmed))
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("promote_confirmed"))?;
    for row in rows {
        let id: i64 = row.get("id");
        let block = to_u64(row.get::<i64, _>("block_number"));
        let log_index = row
            .get::<Option<i32>, _>("log_index")
            .map_or(0, |i| u64::try_from(i).unwrap_or(0));
        let at = rule
            .threshold_block(block)
            .map_or(confirmed, |t| t.min(tip));
        let first_seen: DateTime<Utc> = row.get("first_seen_at");
        summary.confirmation_seconds.push((
            row.get("kind"),
            (now - first_seen).num_milliseconds().max(0) as f64 / 1000.0,
        ));
        history.push(HistoryEntry {
            transfer_id: id,
            from: Some(TransferStatus::Confirming),
            kind: row.get("kind"),
            identity: row.get("identity"),
            to: TransferStatus::Confirmed,
            stuck: false,
            reason: "depth reached".to_owned(),
            block: Some(at),
            topic: topic_for(TransferStatus::Confirmed),
            order: (at, PHASE_SETTLED, block, log_index, id),
        });
    }
    Ok(())
}

/// A reorg to `fork_point`: every transfer included above it goes back to `reorged` (confirmed
/// ones only when the reorg is deeper than the threshold, which is the only way they can be above
/// the fork point).
pub async fn orphan_transfers(
    conn: &mut PgConnection,
    chain: &str,
    fork_point: u64,
    now: DateTime<Utc>,
    history: &mut Vec<HistoryEntry>,
) -> Result<()> {
    let rows = sqlx::query(
        "WITH hit AS (
             SELECT id, status AS old_status FROM transfers
             WHERE chain = $1 AND block_number > $2 AND status IN ('confirming', 'confirmed')
             FOR UPDATE)
         UPDATE transfers t SET status = 'reorged', reorged_at = $3, confirmed_at = NULL, updated_at = $3
         FROM hit WHERE t.chain = $1 AND t.id = hit.id
         RETURNING t.id, t.kind, t.identity, hit.old_status, t.block_number, t.log_index, t.stuck",
    )
    .bind(chain)
    .bind(to_i64(fork_point))
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("orphan_transfers"))?;
    for row in rows {
        let id: i64 = row.get("id");
        let old: String = row.get("old_status");
        let from = TransferStatus::parse(&old);
        let block = to_u64(row.get::<i64, _>("block_number"));
        let log_index = row
            .get::<Option<i32>, _>("log_index")
            .map_or(0, |i| u64::try_from(i).unwrap_or(0));
        let reason = if from == Some(TransferStatus::Confirmed) {
            "block orphaned by a reorg deeper than the confirmation threshold"
        } else {
            "block orphaned"
        };
        history.push(HistoryEntry {
            transfer_id: id,
            from,
            kind: row.get("kind"),
            identity: row.get("identity"),
            to: TransferStatus::Reorged,
            stuck: row.get("stuck"),
            reason: reason.to_owned(),
            block: Some(fork_point + 1),
            topic: topic_for(TransferStatus::Reorged),
            order: (fork_point + 1, PHASE_ORPHANED, block, log_index, id),
        });
    }
    Ok(())
}

/// A step decided by the reconciler for one transfer.
#[derive(Debug, Clone)]
pub struct TransferStep {
    /// The transfer.
    pub transfer_id: i64,
    /// What to do.
    pub step: Step,
}

/// Applies decided steps. Each transition applies only if the transfer is still in the status it
/// was decided from (a batch may have moved it meanwhile); a skipped step is simply decided again
/// on the next pass.
pub async fn apply_steps(
    conn: &mut PgConnection,
    chain: &str,
    steps: &[TransferStep],
    tip: u64,
    now: DateTime<Utc>,
    history: &mut Vec<HistoryEntry>,
    summary: &mut TransferSummary,
) -> Result<()> {
    let mut rank: u64 = 0;
    for TransferStep { transfer_id, step } in steps {
        rank += 1;
        match step {
            Step::Transition {
                from,
                to,
                reason,
                block,
                block_hash,
            } => {
                let row = sqlx::query(
                    "UPDATE transfers SET status = $4, updated_at = $5,
                            stuck = false,
                            failure_reason = CASE WHEN $4 = 'failed' THEN $6 ELSE failure_reason END,
                            block_number = CASE WHEN $7::bytea IS NOT NULL THEN $8 ELSE block_number END,
                            block_hash = COALESCE($7, block_hash),
                            included_at = CASE WHEN $4 = 'confirming' THEN $5 ELSE included_at END,
                            confirmed_at = CASE WHEN $4 = 'confirmed' THEN $5 ELSE confirmed_at END,
                            reorged_at = CASE WHEN $4 = 'reorged' THEN $5
                                              WHEN $4 = 'confirming' THEN NULL ELSE reorged_at END
                     WHERE chain = $1 AND id = $2 AND status = $3
                     RETURNING kind, identity, first_seen_at, stuck",
                )
                .bind(chain)
                .bind(transfer_id)
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(now)
                .bind(reason)
                .bind(block_hash.map(|h| h.to_vec()))
                .bind(block.map(to_i64))
                .fetch_optional(&mut *conn)
                .await
                .map_err(Error::db("apply_step"))?;
                let Some(row) = row else { continue };
                if *to == TransferStatus::Confirmed {
                    let first_seen: DateTime<Utc> = row.get("first_seen_at");
                    summary.confirmation_seconds.push((
                        row.get("kind"),
                        (now - first_seen).num_milliseconds().max(0) as f64 / 1000.0,
                    ));
                }
                history.push(HistoryEntry {
                    transfer_id: *transfer_id,
                    from: Some(*from),
                    kind: row.get("kind"),
                    identity: row.get("identity"),
                    to: *to,
                    stuck: row.get("stuck"),
                    reason: reason.clone(),
                    block: *block,
                    topic: topic_for(*to),
                    order: (block.unwrap_or(tip), PHASE_INCLUDED, 0, rank, *transfer_id),
                });
            }
            Step::MarkStuck { reason } => {
                let row = sqlx::query(
                    "UPDATE transfers SET stuck = true, updated_at = $3
                     WHERE chain = $1 AND id = $2 AND NOT stuck AND status IN ('pending', 'confirming', 'reorged')
                     RETURNING status, kind, identity",
                )
                .bind(chain)
                .bind(transfer_id)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await
                .map_err(Error::db("mark_stuck"))?;
                let Some(row) = row else { continue };
                let Some(status) = TransferStatus::parse(&row.get::<String, _>("status")) else {
                    continue;
                };
                history.push(HistoryEntry {
                    transfer_id: *transfer_id,
                    kind: row.get("kind"),
                    identity: row.get("identity"),
                    from: Some(status),
                    to: status,
                    stuck: true,
                    reason: reason.clone(),
                    block: Some(tip),
                    topic: "transfer.stuck",
                    order: (tip, PHASE_FLAGGED, 0, rank, *transfer_id),
                });
            }
            Step::ClearStuck => {
                sqlx::query(
                    "UPDATE transfers SET stuck = false WHERE chain = $1 AND id = $2 AND stuck",
                )
                .bind(chain)
                .bind(transfer_id)
                .execute(&mut *conn)
                .await
                .map_err(Error::db("clear_stuck"))?;
            }
        }
    }
    Ok(())
}

/// Registers a transaction to watch: a `watched_tx` transfer in `pending`, with its history and
/// outbox rows. Registering the same hash twice is a no-op that returns the existing id.
pub async fn register_watched(
    conn: &mut PgConnection,
    chain: &str,
    tx_hash: B256,
    sender: Option<Address>,
    nonce: Option<u64>,
    label: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(i64, bool)> {
    let existing: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM transfers WHERE chain = $1 AND kind = 'watched_tx' AND identity = $2",
    )
    .bind(chain)
    .bind(format!("{tx_hash:#x}"))
    .fetch_optional(&mut *conn)
    .await
    .map_err(Error::db("register_watched"))?;
    if let Some(id) = existing {
        return Ok((id, false));
    }
    let tip: Option<i64> =
        sqlx::query_scalar("SELECT indexed_block FROM chain_status WHERE chain = $1")
            .bind(chain)
            .fetch_optional(&mut *conn)
            .await
            .map_err(Error::db("register_watched"))?
            .flatten();
    sqlx::query(
        "INSERT INTO watched_transactions (chain, tx_hash, sender, nonce, label, registered_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(chain)
    .bind(tx_hash.to_vec())
    .bind(sender.map(|s| s.to_vec()))
    .bind(nonce.map(to_i64))
    .bind(label)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(Error::db("register_watched"))?;
    let (id, _) = allocate(conn, chain, 1, 0).await?;
    sqlx::query(
        "INSERT INTO transfers (chain, id, kind, identity, status, tx_hash, from_address, details,
                                first_seen_at, first_seen_block, updated_at)
         VALUES ($1, $2, 'watched_tx', $3, 'pending', $4, $5, $6, $7, $8, $7)",
    )
    .bind(chain)
    .bind(id)
    .bind(format!("{tx_hash:#x}"))
    .bind(tx_hash.to_vec())
    .bind(sender.map(|s| s.to_vec()))
    .bind(serde_json::json!({"label": label, "nonce": nonce}))
    .bind(now)
    .bind(tip)
    .execute(&mut *conn)
    .await
    .map_err(Error::db("register_watched"))?;
    let tip = tip.map_or(0, to_u64);
    write_history(
        conn,
        chain,
        vec![HistoryEntry {
            transfer_id: id,
            kind: "watched_tx".to_owned(),
            identity: format!("{tx_hash:#x}"),
            from: None,
            to: TransferStatus::Pending,
            stuck: false,
            reason: "registered".to_owned(),
            block: None,
            topic: topic_for(TransferStatus::Pending),
            order: (tip, PHASE_INCLUDED, 0, 0, id),
        }],
        now,
    )
    .await?;
    Ok((id, true))
}
