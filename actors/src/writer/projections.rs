//! Projections backends query — `streams`, `virtual_balances`, `producers`, `customer_plans` —
//! built from confirmed logs only, inside the store writer's transaction.
//!
//! Forward: [`project_confirmed`] folds every confirmed, not yet projected log into the
//! projections, in chain order, and moves each contract's `projected_to` cursor. Unwind: a reorg shallower than the
//! confirmation threshold never reaches a projected log, so it needs none; a deeper one calls
//! [`rebuild`], which clears the chain's projection rows and folds the canonical logs again.

use std::collections::{BTreeMap, HashMap};

use alloy::primitives::{Address, B256};
use bigdecimal::{BigDecimal, Zero};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, Row};

use crate::error::{Error, Result};
use crate::writer::transfers::to_i64;

/// What a projection pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProjectionSummary {
    /// Confirmed logs folded in.
    pub logs: u64,
    /// Stream updates whose stream is unknown (created before the indexed range).
    pub orphan_updates: u64,
}

fn address(fields: &Value, name: &str) -> Option<Vec<u8>> {
    fields
        .get(name)?
        .as_str()?
        .parse::<Address>()
        .ok()
        .map(|a| a.to_vec())
}

fn bytes32(fields: &Value, name: &str) -> Option<Vec<u8>> {
    fields
        .get(name)?
        .as_str()?
        .parse::<B256>()
        .ok()
        .map(|b| b.to_vec())
}

fn amount(fields: &Value, name: &str) -> Option<BigDecimal> {
    match fields.get(name)? {
        Value::String(text) => text.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// The settlement trigger of `StreamSettled`, as stored.
pub fn trigger_name(code: u64) -> Option<&'static str> {
    match code {
        0 => Some("user_cancellation"),
        1 => Some("producer_claim"),
        2 => Some("auto_expiration"),
        3 => Some("consumer_usage"),
        _ => None,
    }
}

/// Balance changes of one (manager, user, token) within a pass.
#[derive(Debug, Default, Clone)]
struct BalanceDelta {
    total: BigDecimal,
    locked: BigDecimal,
    usage_paid: BigDecimal,
    last_block: i64,
}

type BalanceKey = (Vec<u8>, Vec<u8>, Vec<u8>);

/// A stream closing event: settled or emergency-withdrawn.
struct Close {
    manager: Vec<u8>,
    lock: Vec<u8>,
    status: &'static str,
    amount: BigDecimal,
    returned: Option<BigDecimal>,
    trigger: Option<&'static str>,
    block: i64,
}

/// A customer plan with its stream.
struct PlanRow {
    producer: Vec<u8>,
    plan_id: BigDecimal,
    customer: Vec<u8>,
    lock: Vec<u8>,
    block: i64,
    tx: Vec<u8>,
}

/// A producer registered in ProducerStorage.
struct ProducerRow {
    clone: Vec<u8>,
    producer: Vec<u8>,
    id: BigDecimal,
    name: String,
    registry: Vec<u8>,
    block: i64,
    tx: Vec<u8>,
}

#[derive(Default)]
struct Pass {
    // Stream creations.
    s_tx: Vec<Vec<u8>>,
    s_index: Vec<i32>,
    s_block: Vec<i64>,
    s_manager: Vec<Vec<u8>>,
    s_lock: Vec<Vec<u8>>,
    s_user: Vec<Vec<u8>>,
    s_recipient: Vec<Vec<u8>>,
    s_token: Vec<Vec<u8>>,
    s_total: Vec<BigDecimal>,
    s_duration: Vec<BigDecimal>,
    s_time: Vec<Option<DateTime<Utc>>>,
    // Usage-pool claims, summed per (manager, lock).
    claims: BTreeMap<(Vec<u8>, Vec<u8>), (BigDecimal, i64)>,
    closes: Vec<Close>,
    plans: Vec<PlanRow>,
    producers: Vec<ProducerRow>,
    balances: HashMap<BalanceKey, BalanceDelta>,
}

impl Pass {
    fn balance(
        &mut self,
        manager: &[u8],
        user: Vec<u8>,
        token: Vec<u8>,
        block: i64,
    ) -> &mut BalanceDelta {
        let delta = self
            .balances
            .entry((manager.to_vec(), user, token))
            .or_default();
        delta.last_block = delta.last_block.max(block);
        delta
    }

    /// Folds one decoded log into the pass. Returns false when the log is malformed for its event.
    fn add(&mut self, row: &sqlx::postgres::PgRow) -> bool {
        let event: String = row.get("event");
        let f: Value = row
            .get::<Option<Value>, _>("decoded")
            .unwrap_or(Value::Null);
        let contract: Vec<u8> = row.get("address");
        let tx: Vec<u8> = row.get("tx_hash");
        let block: i64 = row.get("block_number");
        let log_index: i32 = row.get("log_index");
        let time: Option<DateTime<Utc>> = row.get("block_timestamp");
        match event.as_str() {
            "StreamLockCreated" => {
                let (
                    Some(lock),
                    Some(user),
                    Some(recipient),
                    Some(token),
                    Some(total),
                    Some(duration),
                ) = (
                    bytes32(&f, "lockId"),
                    address(&f, "user"),
                    address(&f, "recipient"),
                    address(&f, "token"),
                    amount(&f, "totalAmount"),
                    amount(&f, "duration"),
                )
                else {
                    return false;
                };
                self.s_tx.push(tx);
                self.s_index.push(log_index);
                self.s_block.push(block);
                self.s_manager.push(contract);
                self.s_lock.push(lock);
                self.s_user.push(user);
                self.s_recipient.push(recipient);
                self.s_token.push(token);
                self.s_total.push(total);
                self.s_duration.push(duration);
                self.s_time.push(time);
            }
            "StreamSettled" => {
                let (Some(lock), Some(settled), Some(returned)) = (
                    bytes32(&f, "lockId"),
                    amount(&f, "settledAmount"),
                    amount(&f, "returnedAmount"),
                ) else {
                    return false;
                };
                let trigger = f
                    .get("trigger")
                    .and_then(Value::as_u64)
                    .and_then(trigger_name);
                self.closes.push(Close {
                    manager: contract,
                    lock,
                    status: "settled",
                    amount: settled,
                    returned: Some(returned),
                    trigger,
                    block,
                });
            }
            "EmergencyWithdraw" => {
                let (Some(lock), Some(withdrawn)) = (bytes32(&f, "lockId"), amount(&f, "amount"))
                else {
                    return false;
                };
                self.closes.push(Close {
                    manager: contract,
                    lock,
                    status: "emergency_withdrawn",
                    amount: withdrawn,
                    returned: None,
                    trigger: None,
                    block,
                });
            }
            "PartialClaim" => {
                let (Some(lock), Some(paid)) = (bytes32(&f, "lockId"), amount(&f, "amount")) else {
                    return false;
                };
                let entry = self
                    .claims
                    .entry((contract, lock))
                    .or_insert_with(|| (BigDecimal::zero(), block));
                entry.0 += paid;
                entry.1 = entry.1.max(block);
            }
            "BalanceDeposited" | "BalanceLocked" | "BalanceUnlocked" | "BalanceWithdrawn" => {
                let (Some(user), Some(token), Some(value)) = (
                    address(&f, "user"),
                    address(&f, "token"),
                    amount(&f, "amount"),
                ) else {
                    return false;
                };
                let delta = self.balance(&contract, user, token, block);
                match event.as_str() {
                    "BalanceDeposited" => delta.total += value,
                    "BalanceLocked" => delta.locked += value,
                    "BalanceUnlocked" => delta.locked -= value,
                    _ => delta.total -= value,
                }
            }
            "CustomerPlanStreamCreated" | "CustomerPlanWithStreamCreated" => {
                let lock = bytes32(&f, "lockId").or_else(|| bytes32(&f, "streamLockId"));
                let producer = if event == "CustomerPlanStreamCreated" {
                    address(&f, "producer")
                } else {
                    Some(contract)
                };
                let (Some(producer), Some(plan), Some(customer), Some(lock)) = (
                    producer,
                    amount(&f, "customerPlanId"),
                    address(&f, "customer"),
                    lock,
                ) else {
                    return false;
                };
                self.plans.push(PlanRow {
                    producer,
                    plan_id: plan,
                    customer,
                    lock,
                    block,
                    tx,
                });
            }
            "LogProducer" => {
                let (Some(clone), Some(producer), Some(id)) = (
                    address(&f, "cloneAddress"),
                    address(&f, "producerAddress"),
                    amount(&f, "producerId"),
                ) else {
                    return false;
                };
                let name = f
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.producers.push(ProducerRow {
                    clone,
                    producer,
                    id,
                    name,
                    registry: contract,
                    block,
                    tx,
                });
            }
            _ => {}
        }
        true
    }
}

/// Folds every confirmed (at or below `confirmed`), not yet projected, canonical log of the chain
/// into the projections, in chain order, and moves each contract's projection cursor.
pub async fn project_confirmed(
    conn: &mut PgConnection,
    chain: &str,
    confirmed: u64,
) -> Result<ProjectionSummary> {
    // Per contract: (projected_to, min(confirmed, indexed_to)]. A contract that lags behind the
    // others (added later, or a discovered producer clone) is projected as far as it is indexed.
    let ranges = sqlx::query(
        "SELECT address, coalesce(projected_to, start_block - 1) AS from_block,
                LEAST($2, indexed_to) AS to_block
         FROM contract_cursors
         WHERE chain = $1 AND indexed_to IS NOT NULL
           AND LEAST($2, indexed_to) > coalesce(projected_to, start_block - 1)",
    )
    .bind(chain)
    .bind(to_i64(confirmed))
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("project_logs"))?;
    let mut rows = Vec::new();
    for range in &ranges {
        let address: Vec<u8> = range.get("address");
        let from: i64 = range.get("from_block");
        let to: i64 = range.get("to_block");
        rows.extend(
            sqlx::query(
                "SELECT tx_hash, log_index, block_number, block_timestamp, address, event, decoded
                 FROM evm_logs
                 WHERE chain = $1 AND block_number > $2 AND block_number <= $3 AND address = $4
                   AND NOT removed AND decode_status = 'decoded'",
            )
            .bind(chain)
            .bind(from)
            .bind(to)
            .bind(&address)
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::db("project_logs"))?,
        );
        sqlx::query(
            "UPDATE contract_cursors SET projected_to = $3 WHERE chain = $1 AND address = $2",
        )
        .bind(chain)
        .bind(&address)
        .bind(to)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("project_logs"))?;
    }
    rows.sort_by_key(|r| {
        (
            r.get::<i64, _>("block_number"),
            r.get::<i32, _>("log_index"),
        )
    });
    let mut summary = ProjectionSummary {
        logs: rows.len() as u64,
        ..ProjectionSummary::default()
    };
    let mut pass = Pass::default();
    for row in &rows {
        if !pass.add(row) {
            tracing::warn!(
                chain,
                "a confirmed log lacks the fields of its event; left out of the projections"
            );
        }
    }
    apply(conn, chain, pass, &mut summary).await?;
    Ok(summary)
}

async fn apply(
    conn: &mut PgConnection,
    chain: &str,
    mut pass: Pass,
    summary: &mut ProjectionSummary,
) -> Result<()> {
    if !pass.s_tx.is_empty() {
        // Fields the event does not carry come from getTokenLock, read when the creating log was
        // seen (first, and again when re-included after a reorg) and kept in its transfer's
        // details (looked up by tx hash: a plain index scan, whatever the table's statistics).
        let lock_rows = sqlx::query(
            "SELECT tx_hash, log_index, details->'lock' AS lock FROM transfers
             WHERE chain = $1 AND tx_hash = ANY($2) AND kind = 'stream_lock_created'",
        )
        .bind(chain)
        .bind(&pass.s_tx)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db("project_streams"))?;
        let mut locks: HashMap<(Vec<u8>, i32), Value> = HashMap::new();
        for row in lock_rows {
            let lock: Option<Value> = row.get("lock");
            if let (Some(lock), Some(index)) = (lock, row.get::<Option<i32>, _>("log_index")) {
                locks.insert((row.get("tx_hash"), index), lock);
            }
        }
        let field = |tx: &Vec<u8>, index: &i32, name: &str| -> Option<String> {
            locks
                .get(&(tx.clone(), *index))
                .and_then(|lock| lock.get(name))
                .and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
        };
        let pairs = pass.s_tx.iter().zip(&pass.s_index);
        let rates: Vec<Option<BigDecimal>> = pairs
            .clone()
            .map(|(tx, i)| field(tx, i, "streamRate").and_then(|v| v.parse().ok()))
            .collect();
        let types: Vec<Option<i16>> = pairs
            .clone()
            .map(|(tx, i)| field(tx, i, "streamType").and_then(|v| v.parse().ok()))
            .collect();
        let usages: Vec<Option<BigDecimal>> = pairs
            .clone()
            .map(|(tx, i)| field(tx, i, "usageCount").and_then(|v| v.parse().ok()))
            .collect();
        let starts: Vec<Option<f64>> = pairs
            .clone()
            .map(|(tx, i)| field(tx, i, "startTime").and_then(|v| v.parse().ok()))
            .collect();
        let ends: Vec<Option<f64>> = pairs
            .map(|(tx, i)| field(tx, i, "endTime").and_then(|v| v.parse().ok()))
            .collect();
        sqlx::query(
            "INSERT INTO streams (chain, tx_hash, log_index, block_number, manager, lock_id, user_address,
                                  recipient, token, total_amount, duration_seconds, stream_rate, stream_type,
                                  usage_count, start_time, end_time, status)
             SELECT $1, x.tx_hash, x.log_index, x.block_number, x.manager, x.lock_id, x.user_address,
                    x.recipient, x.token, x.total_amount, x.duration,
                    COALESCE(x.rate, div(x.total_amount, x.duration)), x.stream_type, x.usage_count,
                    COALESCE(to_timestamp(x.start_time), x.block_time),
                    COALESCE(to_timestamp(x.end_time),
                             x.block_time + make_interval(secs => x.duration::double precision)),
                    'active'
             FROM UNNEST($2::bytea[], $3::int[], $4::bigint[], $5::bytea[], $6::bytea[], $7::bytea[], $8::bytea[],
                         $9::bytea[], $10::numeric[], $11::numeric[], $12::timestamptz[], $13::numeric[],
                         $14::smallint[], $15::numeric[], $16::float8[], $17::float8[])
               AS x (tx_hash, log_index, block_number, manager, lock_id, user_address, recipient, token,
                     total_amount, duration, block_time, rate, stream_type, usage_count, start_time, end_time)
             ON CONFLICT (chain, tx_hash, log_index) DO NOTHING",
        )
        .bind(chain)
        .bind(&pass.s_tx)
        .bind(&pass.s_index)
        .bind(&pass.s_block)
        .bind(&pass.s_manager)
        .bind(&pass.s_lock)
        .bind(&pass.s_user)
        .bind(&pass.s_recipient)
        .bind(&pass.s_token)
        .bind(&pass.s_total)
        .bind(&pass.s_duration)
        .bind(&pass.s_time)
        .bind(&rates)
        .bind(&types)
        .bind(&usages)
        .bind(&starts)
        .bind(&ends)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("project_streams"))?;
        // quirk 1: an identical create in the same block reuses the lockId and overwrites the
        // earlier record on-chain. Every row of a shared lockId is flagged; all but the newest
        // are superseded.
        sqlx::query(
            "WITH dup AS (
                 SELECT s.tx_hash, s.log_index,
                        row_number() OVER (PARTITION BY s.manager, s.lock_id
                                           ORDER BY s.block_number DESC, s.log_index DESC) AS rank
                 FROM streams s
                 JOIN (SELECT DISTINCT m, l FROM UNNEST($2::bytea[], $3::bytea[]) AS x (m, l)) x
                   ON s.manager = x.m AND s.lock_id = x.l
                 WHERE s.chain = $1)
             UPDATE streams s SET duplicate_lock_id = true,
                    status = CASE WHEN dup.rank > 1 AND s.status = 'active' THEN 'superseded' ELSE s.status END
             FROM dup
             WHERE s.chain = $1 AND s.tx_hash = dup.tx_hash AND s.log_index = dup.log_index
               AND (SELECT count(*) FROM streams o WHERE o.chain = $1 AND o.manager = s.manager AND o.lock_id = s.lock_id) > 1",
        )
        .bind(chain)
        .bind(&pass.s_manager)
        .bind(&pass.s_lock)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("project_streams"))?;
    }

    for PlanRow {
        producer,
        plan_id: plan,
        customer,
        lock,
        block,
        tx,
    } in &pass.plans
    {
        sqlx::query(
            "INSERT INTO customer_plans (chain, producer, customer_plan_id, customer, lock_id, block_number, tx_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(chain)
        .bind(producer)
        .bind(plan)
        .bind(customer)
        .bind(lock)
        .bind(block)
        .bind(tx)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("project_customer_plans"))?;
        sqlx::query(
            "UPDATE streams SET customer_plan_id = $3, producer = $4
             WHERE chain = $1 AND lock_id = $2 AND status <> 'superseded' AND recipient = $4",
        )
        .bind(chain)
        .bind(lock)
        .bind(plan)
        .bind(producer)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("project_customer_plans"))?;
    }

    for ProducerRow {
        clone,
        producer,
        id,
        name,
        registry,
        block,
        tx,
    } in &pass.producers
    {
        sqlx::query(
            "INSERT INTO producers (chain, clone_address, producer_address, producer_id, name, registry, block_number, tx_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(chain)
        .bind(clone)
        .bind(producer)
        .bind(id)
        .bind(name)
        .bind(registry)
        .bind(block)
        .bind(tx)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("project_producers"))?;
    }

    // Usage-pool claims (quirk 4): the recipient is paid and the amount unlocked, but the user's
    // total is not lowered; the paid part is tracked as usage_paid (the usage-pool drift).
    if !pass.claims.is_empty() {
        let (mut managers, mut locks, mut paid, mut blocks) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((manager, lock), (sum, block)) in &pass.claims {
            managers.push(manager.clone());
            locks.push(lock.clone());
            paid.push(sum.clone());
            blocks.push(*block);
        }
        let rows = sqlx::query(
            "UPDATE streams s SET claimed_amount = s.claimed_amount + x.paid,
                    -- div(): exact integer division (`/` on NUMERIC rounds to its display scale).
                    used_count = CASE WHEN s.usage_count > 0 AND div(s.total_amount, s.usage_count) > 0
                                      THEN s.used_count + div(x.paid, div(s.total_amount, s.usage_count))
                                      ELSE s.used_count END,
                    status = CASE WHEN s.usage_count > 0 AND div(s.total_amount, s.usage_count) > 0
                                   AND s.used_count + div(x.paid, div(s.total_amount, s.usage_count)) >= s.usage_count
                                  THEN 'depleted' ELSE s.status END,
                    closed_block = CASE WHEN s.usage_count > 0 AND div(s.total_amount, s.usage_count) > 0
                                   AND s.used_count + div(x.paid, div(s.total_amount, s.usage_count)) >= s.usage_count
                                  THEN x.block ELSE s.closed_block END
             FROM UNNEST($2::bytea[], $3::bytea[], $4::numeric[], $5::bigint[]) AS x (manager, lock_id, paid, block)
             WHERE s.chain = $1 AND s.manager = x.manager AND s.lock_id = x.lock_id AND s.status = 'active'
             RETURNING s.manager, s.user_address, s.token, x.paid, x.block",
        )
        .bind(chain)
        .bind(&managers)
        .bind(&locks)
        .bind(&paid)
        .bind(&blocks)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db("project_claims"))?;
        summary.orphan_updates += (pass.claims.len() - rows.len()) as u64;
        for row in rows {
            let manager: Vec<u8> = row.get("manager");
            let paid: BigDecimal = row.get("paid");
            pass.balance(
                &manager,
                row.get("user_address"),
                row.get("token"),
                row.get("block"),
            )
            .usage_paid += paid;
        }
    }

    if !pass.closes.is_empty() {
        let count = pass.closes.len();
        let mut managers = Vec::with_capacity(count);
        let mut locks = Vec::with_capacity(count);
        let mut statuses = Vec::with_capacity(count);
        let mut amounts = Vec::with_capacity(count);
        let mut returned = Vec::with_capacity(count);
        let mut triggers = Vec::with_capacity(count);
        let mut blocks = Vec::with_capacity(count);
        for close in &pass.closes {
            managers.push(close.manager.clone());
            locks.push(close.lock.clone());
            statuses.push(close.status);
            amounts.push(close.amount.clone());
            returned.push(close.returned.clone());
            triggers.push(close.trigger);
            blocks.push(close.block);
        }
        let rows = sqlx::query(
            "UPDATE streams s SET status = x.status, closed_block = x.block,
                    settled_amount = CASE WHEN x.status = 'settled' THEN x.amount END,
                    returned_amount = x.returned,
                    withdrawn_amount = CASE WHEN x.status = 'emergency_withdrawn' THEN x.amount END,
                    settle_trigger = x.trigger
             FROM UNNEST($2::bytea[], $3::bytea[], $4::text[], $5::numeric[], $6::numeric[], $7::text[], $8::bigint[])
               AS x (manager, lock_id, status, amount, returned, trigger, block)
             WHERE s.chain = $1 AND s.manager = x.manager AND s.lock_id = x.lock_id AND s.status = 'active'
             RETURNING s.manager, s.user_address, s.token, x.status, x.amount, x.block",
        )
        .bind(chain)
        .bind(&managers)
        .bind(&locks)
        .bind(&statuses)
        .bind(&amounts)
        .bind(&returned)
        .bind(&triggers)
        .bind(&blocks)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db("project_settlements"))?;
        summary.orphan_updates += (count - rows.len()) as u64;
        for row in rows {
            // quirk 7: the payout to the recipient has no balance event; the total drops by the
            // settled amount. Emergency withdrawals come with BalanceWithdrawn already.
            if row.get::<String, _>("status") == "settled" {
                let manager: Vec<u8> = row.get("manager");
                let settled: BigDecimal = row.get("amount");
                pass.balance(
                    &manager,
                    row.get("user_address"),
                    row.get("token"),
                    row.get("block"),
                )
                .total -= settled;
            }
        }
    }

    if !pass.balances.is_empty() {
        let count = pass.balances.len();
        let (mut managers, mut users, mut tokens) = (
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
        );
        let (mut totals, mut locked, mut usage, mut blocks) = (
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
        );
        for ((manager, user, token), delta) in pass.balances {
            managers.push(manager);
            users.push(user);
            tokens.push(token);
            totals.push(delta.total);
            locked.push(delta.locked);
            usage.push(delta.usage_paid);
            blocks.push(delta.last_block);
        }
        sqlx::query(
            "INSERT INTO virtual_balances AS b (chain, manager, user_address, token, total, locked, usage_paid, last_block)
             SELECT $1, * FROM UNNEST($2::bytea[], $3::bytea[], $4::bytea[], $5::numeric[], $6::numeric[],
                                      $7::numeric[], $8::bigint[])
             ON CONFLICT (chain, manager, user_address, token) DO UPDATE
               SET total = b.total + EXCLUDED.total, locked = b.locked + EXCLUDED.locked,
                   usage_paid = b.usage_paid + EXCLUDED.usage_paid,
                   last_block = GREATEST(b.last_block, EXCLUDED.last_block)",
        )
        .bind(chain)
        .bind(&managers)
        .bind(&users)
        .bind(&tokens)
        .bind(&totals)
        .bind(&locked)
        .bind(&usage)
        .bind(&blocks)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("project_balances"))?;
    }
    Ok(())
}

/// The unwind of [`project_confirmed`] for a reorg deeper than the confirmation threshold:
/// clears the chain's projection rows and folds the canonical confirmed logs again.
pub async fn rebuild(
    conn: &mut PgConnection,
    chain: &str,
    confirmed: u64,
) -> Result<ProjectionSummary> {
    for table in ["streams", "virtual_balances", "producers", "customer_plans"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE chain = $1"))
            .bind(chain)
            .execute(&mut *conn)
            .await
            .map_err(Error::db("rebuild_projections"))?;
    }
    sqlx::query("UPDATE contract_cursors SET projected_to = NULL WHERE chain = $1")
        .bind(chain)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("rebuild_projections"))?;
    project_confirmed(conn, chain, confirmed).await
}

/// Flags active streams whose end time plus `grace` lies at or before `chain_time` (the newest
/// indexed block's timestamp). Returns the newly overdue streams' (tx hash, log index, lock id).
pub async fn mark_overdue(
    conn: &mut PgConnection,
    chain: &str,
    grace: std::time::Duration,
    chain_time: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<(Vec<u8>, i32, Vec<u8>)>> {
    let cutoff = chain_time - chrono::Duration::from_std(grace).unwrap_or_default();
    let rows = sqlx::query(
        "UPDATE streams SET overdue_since = $3
         WHERE chain = $1 AND status = 'active' AND overdue_since IS NULL AND end_time <= $2
         RETURNING tx_hash, log_index, lock_id",
    )
    .bind(chain)
    .bind(cutoff)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("mark_overdue"))?;
    let mut out: Vec<(Vec<u8>, i32, Vec<u8>)> = rows
        .into_iter()
        .map(|r| (r.get("tx_hash"), r.get("log_index"), r.get("lock_id")))
        .collect();
    out.sort();
    Ok(out)
}
