//! The sqlx repository behind the store writer. Every forward write has its unwind next to it:
//! [`commit_blocks`] / [`unwind_reorg`], [`register_contracts`] / (cursor rewind in
//! [`unwind_reorg`] and [`rewind_chain`]).
//!
//! All functions take an open transaction or connection: the caller decides the transaction
//! boundary, so a batch of events, its block window and its cursor always commit together.

use std::collections::HashMap;

use alloy::primitives::{Address, B256};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use crate::chain::{BlockRef, ChainEvent, CursorAdvance, DiscoveredContract, RawLog};
use crate::contracts::DecodeOutcome;
use crate::error::{Error, Result};

/// A contract cursor as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractCursor {
    /// Contract address.
    pub address: Address,
    /// Role (`stream_lock_manager`, `producer_storage`, `producer`, `token`).
    pub role: String,
    /// First block to index.
    pub start_block: u64,
    /// Last block committed, if any.
    pub indexed_to: Option<u64>,
}

impl ContractCursor {
    /// The next block this contract needs.
    pub fn next_block(&self) -> u64 {
        self.indexed_to.map_or(self.start_block, |b| b + 1)
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn timestamp(seconds: u64) -> DateTime<Utc> {
    DateTime::from_timestamp(to_i64(seconds), 0).unwrap_or_default()
}

/// Records the chain's identity on first use and refuses a database that belongs to another chain.
pub async fn ensure_evm_identity(
    conn: &mut PgConnection,
    chain: &str,
    chain_id: u64,
    genesis: B256,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO chains (name, kind, chain_id, genesis_hash) VALUES ($1, 'evm', $2, $3)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(chain)
    .bind(to_i64(chain_id))
    .bind(genesis.as_slice())
    .execute(&mut *conn)
    .await
    .map_err(Error::db("ensure_identity"))?;
    let row = sqlx::query("SELECT kind, chain_id, genesis_hash FROM chains WHERE name = $1")
        .bind(chain)
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::db("ensure_identity"))?;
    let stored_chain_id: Option<i64> = row.get("chain_id");
    let stored_genesis: Vec<u8> = row.get("genesis_hash");
    let kind: String = row.get("kind");
    let stored_chain_id = to_u64(stored_chain_id.unwrap_or(-1));
    let stored_genesis = B256::try_from(stored_genesis.as_slice()).unwrap_or_default();
    if kind != "evm" || stored_chain_id != chain_id || stored_genesis != genesis {
        return Err(Error::IdentityMismatch {
            chain: chain.to_owned(),
            stored_chain_id,
            stored_genesis,
            node_chain_id: chain_id,
            node_genesis: genesis,
        });
    }
    sqlx::query("INSERT INTO chain_status (chain) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(chain)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("ensure_identity"))?;
    Ok(())
}

/// Adds configured (or discovered) contracts that have no cursor yet. Existing cursors are
/// left alone, so a restart never moves a contract back or forth.
pub async fn register_contracts(
    conn: &mut PgConnection,
    chain: &str,
    contracts: &[(Address, String, u64, Option<B256>)],
) -> Result<()> {
    if contracts.is_empty() {
        return Ok(());
    }
    let addresses: Vec<Vec<u8>> = contracts.iter().map(|c| c.0.to_vec()).collect();
    let roles: Vec<String> = contracts.iter().map(|c| c.1.clone()).collect();
    let starts: Vec<i64> = contracts.iter().map(|c| to_i64(c.2)).collect();
    let txs: Vec<Option<Vec<u8>>> = contracts.iter().map(|c| c.3.map(|h| h.to_vec())).collect();
    sqlx::query(
        "INSERT INTO contract_cursors (chain, address, role, start_block, discovered_by_tx)
         SELECT $1, * FROM UNNEST($2::bytea[], $3::text[], $4::bigint[], $5::bytea[])
         ON CONFLICT (chain, address) DO NOTHING",
    )
    .bind(chain)
    .bind(&addresses)
    .bind(&roles)
    .bind(&starts)
    .bind(&txs)
    .execute(&mut *conn)
    .await
    .map_err(Error::db("register_contracts"))?;
    Ok(())
}

/// Loads every contract cursor of a chain.
pub async fn load_cursors(conn: &mut PgConnection, chain: &str) -> Result<Vec<ContractCursor>> {
    let rows = sqlx::query(
        "SELECT address, role, start_block, indexed_to FROM contract_cursors WHERE chain = $1 ORDER BY address",
    )
    .bind(chain)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("load_cursors"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let address: Vec<u8> = row.get("address");
            ContractCursor {
                address: Address::from_slice(&address),
                role: row.get("role"),
                start_block: to_u64(row.get("start_block")),
                indexed_to: row.get::<Option<i64>, _>("indexed_to").map(to_u64),
            }
        })
        .collect())
}

/// Loads the persisted recent-block window (newest `capacity` blocks).
pub async fn load_window(
    conn: &mut PgConnection,
    chain: &str,
    capacity: u64,
) -> Result<Vec<BlockRef>> {
    let rows = sqlx::query(
        "SELECT number, hash, parent_hash, extract(epoch FROM timestamp)::bigint AS ts
         FROM evm_blocks WHERE chain = $1 ORDER BY number DESC LIMIT $2",
    )
    .bind(chain)
    .bind(to_i64(capacity))
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("load_window"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let hash: Vec<u8> = row.get("hash");
            let parent: Vec<u8> = row.get("parent_hash");
            BlockRef {
                number: to_u64(row.get("number")),
                hash: B256::try_from(hash.as_slice()).unwrap_or_default(),
                parent_hash: B256::try_from(parent.as_slice()).unwrap_or_default(),
                timestamp: to_u64(row.get("ts")),
            }
        })
        .collect())
}

/// Totals of one committed batch, for metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CommitSummary {
    /// Logs written, by (contract address, event label).
    pub events: HashMap<(Address, &'static str), u64>,
}

/// Writes one `Committed` batch: blocks into the window, logs (idempotent upserts keyed by
/// chain, block hash, tx hash and log index), discovered contracts, cursors and chain status.
/// Its unwind is [`unwind_reorg`].
#[allow(clippy::too_many_arguments)]
pub async fn commit_blocks(
    conn: &mut PgConnection,
    chain: &str,
    blocks: &[BlockRef],
    logs: &[RawLog],
    cursor: &CursorAdvance,
    discovered: &[DiscoveredContract],
    head: u64,
    reset_window: bool,
) -> Result<CommitSummary> {
    if reset_window {
        sqlx::query("DELETE FROM evm_blocks WHERE chain = $1")
            .bind(chain)
            .execute(&mut *conn)
            .await
            .map_err(Error::db("commit_blocks"))?;
    }
    if !blocks.is_empty() {
        let numbers: Vec<i64> = blocks.iter().map(|b| to_i64(b.number)).collect();
        let hashes: Vec<Vec<u8>> = blocks.iter().map(|b| b.hash.to_vec()).collect();
        let parents: Vec<Vec<u8>> = blocks.iter().map(|b| b.parent_hash.to_vec()).collect();
        let times: Vec<DateTime<Utc>> = blocks.iter().map(|b| timestamp(b.timestamp)).collect();
        sqlx::query(
            "INSERT INTO evm_blocks (chain, number, hash, parent_hash, timestamp)
             SELECT $1, * FROM UNNEST($2::bigint[], $3::bytea[], $4::bytea[], $5::timestamptz[])
             ON CONFLICT (chain, number) DO UPDATE
               SET hash = EXCLUDED.hash, parent_hash = EXCLUDED.parent_hash, timestamp = EXCLUDED.timestamp",
        )
        .bind(chain)
        .bind(&numbers)
        .bind(&hashes)
        .bind(&parents)
        .bind(&times)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("commit_blocks"))?;
    }

    let mut summary = CommitSummary::default();
    if !logs.is_empty() {
        let mut block_hashes = Vec::with_capacity(logs.len());
        let mut tx_hashes = Vec::with_capacity(logs.len());
        let mut log_indexes = Vec::with_capacity(logs.len());
        let mut block_numbers = Vec::with_capacity(logs.len());
        let mut block_times: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(logs.len());
        let mut tx_indexes = Vec::with_capacity(logs.len());
        let mut addresses = Vec::with_capacity(logs.len());
        let mut topics: [Vec<Option<Vec<u8>>>; 4] = Default::default();
        let mut data = Vec::with_capacity(logs.len());
        let mut events: Vec<Option<&'static str>> = Vec::with_capacity(logs.len());
        let mut statuses = Vec::with_capacity(logs.len());
        let mut decoded_json: Vec<Option<serde_json::Value>> = Vec::with_capacity(logs.len());
        let mut reasons: Vec<Option<String>> = Vec::with_capacity(logs.len());
        for log in logs {
            block_hashes.push(log.block_hash.to_vec());
            tx_hashes.push(log.tx_hash.to_vec());
            log_indexes.push(i32::try_from(log.log_index).unwrap_or(i32::MAX));
            block_numbers.push(to_i64(log.block_number));
            block_times.push(log.block_timestamp.map(timestamp));
            tx_indexes.push(i32::try_from(log.tx_index).unwrap_or(i32::MAX));
            addresses.push(log.address.to_vec());
            for (slot, column) in topics.iter_mut().enumerate() {
                column.push(log.topics.get(slot).map(|t| t.to_vec()));
            }
            data.push(log.data.clone());
            let (event, status, fields, reason) = match &log.decoded {
                DecodeOutcome::Decoded(decoded) => (
                    Some(decoded.name),
                    "decoded",
                    Some(decoded.fields.clone()),
                    None,
                ),
                DecodeOutcome::Unknown => (None, "unknown", None, None),
                DecodeOutcome::Quarantined { name, reason } => {
                    (Some(*name), "quarantined", None, Some(reason.clone()))
                }
            };
            events.push(event);
            statuses.push(status);
            decoded_json.push(fields);
            reasons.push(reason);
            *summary
                .events
                .entry((log.address, log.decoded.label()))
                .or_default() += 1;
        }
        let [topic0, topic1, topic2, topic3] = topics;
        // A log seen again (a branch that came back after a reorg, or a retried batch) is the
        // same row: the upsert revives it instead of duplicating it.
        sqlx::query(
            "INSERT INTO evm_logs (chain, block_hash, tx_hash, log_index, block_number, block_timestamp,
                                   tx_index, address, topic0, topic1, topic2, topic3, data, event,
                                   decode_status, decoded, quarantine_reason)
             SELECT $1, * FROM UNNEST($2::bytea[], $3::bytea[], $4::int[], $5::bigint[], $6::timestamptz[],
                                      $7::int[], $8::bytea[], $9::bytea[], $10::bytea[], $11::bytea[],
                                      $12::bytea[], $13::bytea[], $14::text[], $15::text[], $16::jsonb[],
                                      $17::text[])
             ON CONFLICT (chain, block_hash, tx_hash, log_index) DO UPDATE
               SET removed = false, removed_at = NULL
               WHERE evm_logs.removed",
        )
        .bind(chain)
        .bind(&block_hashes)
        .bind(&tx_hashes)
        .bind(&log_indexes)
        .bind(&block_numbers)
        .bind(&block_times)
        .bind(&tx_indexes)
        .bind(&addresses)
        .bind(&topic0)
        .bind(&topic1)
        .bind(&topic2)
        .bind(&topic3)
        .bind(&data)
        .bind(&events)
        .bind(&statuses)
        .bind(&decoded_json)
        .bind(&reasons)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("commit_logs"))?;
    }

    if !discovered.is_empty() {
        let contracts: Vec<(Address, String, u64, Option<B256>)> = discovered
            .iter()
            .map(|d| {
                (
                    d.address,
                    "producer".to_owned(),
                    d.from_block,
                    Some(d.tx_hash),
                )
            })
            .collect();
        register_contracts(conn, chain, &contracts).await?;
    }

    let moved: Vec<Vec<u8>> = cursor.contracts.iter().map(|a| a.to_vec()).collect();
    sqlx::query(
        "UPDATE contract_cursors SET indexed_to = $3, updated_at = now()
         WHERE chain = $1 AND address = ANY($2) AND (indexed_to IS NULL OR indexed_to < $3)",
    )
    .bind(chain)
    .bind(&moved)
    .bind(to_i64(cursor.to_block))
    .execute(&mut *conn)
    .await
    .map_err(Error::db("commit_cursor"))?;

    update_status(conn, chain, head).await?;
    Ok(summary)
}

/// Keeps `chain_status` in step: head, and the indexed height = the lowest contract cursor.
async fn update_status(conn: &mut PgConnection, chain: &str, head: u64) -> Result<()> {
    sqlx::query(
        "UPDATE chain_status SET
            head_seen_at = CASE WHEN head_block IS DISTINCT FROM $2 THEN now() ELSE head_seen_at END,
            head_block = $2,
            indexed_block = (SELECT min(coalesce(indexed_to, start_block - 1)) FROM contract_cursors WHERE chain = $1),
            updated_at = now()
         WHERE chain = $1",
    )
    .bind(chain)
    .bind(to_i64(head))
    .execute(&mut *conn)
    .await
    .map_err(Error::db("update_status"))?;
    Ok(())
}

/// Unwinds everything above `fork_point`: logs of orphaned blocks are marked removed (kept for
/// audit), the window and the cursors go back to the fork point, and the reorg is recorded with
/// its depth (the number of blocks replaced).
pub async fn unwind_reorg(
    conn: &mut PgConnection,
    chain: &str,
    fork_point: u64,
    depth: u64,
    old_head: u64,
    head: u64,
) -> Result<u64> {
    let removed = sqlx::query(
        "UPDATE evm_logs SET removed = true, removed_at = now()
         WHERE chain = $1 AND block_number > $2 AND NOT removed",
    )
    .bind(chain)
    .bind(to_i64(fork_point))
    .execute(&mut *conn)
    .await
    .map_err(Error::db("unwind_reorg"))?
    .rows_affected();
    sqlx::query("DELETE FROM evm_blocks WHERE chain = $1 AND number > $2")
        .bind(chain)
        .bind(to_i64(fork_point))
        .execute(&mut *conn)
        .await
        .map_err(Error::db("unwind_reorg"))?;
    sqlx::query(
        "UPDATE contract_cursors SET indexed_to = GREATEST($2, start_block - 1), updated_at = now()
         WHERE chain = $1 AND indexed_to > $2",
    )
    .bind(chain)
    .bind(to_i64(fork_point))
    .execute(&mut *conn)
    .await
    .map_err(Error::db("unwind_reorg"))?;
    if depth > 0 {
        sqlx::query(
            "INSERT INTO reorgs (chain, fork_point, depth, old_head, new_head) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(chain)
        .bind(to_i64(fork_point))
        .bind(to_i64(depth))
        .bind(to_i64(old_head))
        .bind(to_i64(head))
        .execute(&mut *conn)
        .await
        .map_err(Error::db("unwind_reorg"))?;
        sqlx::query(
            "UPDATE chain_status SET last_reorg_at = now(), last_reorg_depth = $2, last_reorg_fork_point = $3
             WHERE chain = $1",
        )
        .bind(chain)
        .bind(to_i64(depth))
        .bind(to_i64(fork_point))
        .execute(&mut *conn)
        .await
        .map_err(Error::db("unwind_reorg"))?;
    }
    update_status(conn, chain, head).await?;
    Ok(removed)
}

/// Applies one chain event inside the caller's transaction; returns the commit summary.
pub async fn apply_event(
    conn: &mut PgConnection,
    chain: &str,
    event: &ChainEvent,
) -> Result<CommitSummary> {
    match event {
        ChainEvent::Committed {
            blocks,
            logs,
            cursor,
            discovered,
            head,
            reset_window,
        } => {
            commit_blocks(
                conn,
                chain,
                blocks,
                logs,
                cursor,
                discovered,
                *head,
                *reset_window,
            )
            .await
        }
        ChainEvent::Reorged {
            fork_point,
            orphaned,
            head,
        } => {
            let old_head = orphaned.first().map_or(*fork_point, |b| b.number);
            unwind_reorg(
                conn,
                chain,
                *fork_point,
                event.reorg_depth(),
                old_head,
                *head,
            )
            .await?;
            Ok(CommitSummary::default())
        }
    }
}

/// `chainsync rewind`: forgets everything above `to_block - 1` so the listener re-indexes from
/// `to_block`. Logs above are marked removed (they are re-derived and revived on re-indexing).
pub async fn rewind_chain(conn: &mut PgConnection, chain: &str, to_block: u64) -> Result<u64> {
    let fork_point = to_block.saturating_sub(1);
    let head: Option<i64> =
        sqlx::query_scalar("SELECT head_block FROM chain_status WHERE chain = $1")
            .bind(chain)
            .fetch_optional(&mut *conn)
            .await
            .map_err(Error::db("rewind"))?
            .flatten();
    let head = head.map_or(fork_point, to_u64);
    if to_block == 0 {
        sqlx::query("UPDATE evm_logs SET removed = true, removed_at = now() WHERE chain = $1 AND NOT removed")
            .bind(chain)
            .execute(&mut *conn)
            .await
            .map_err(Error::db("rewind"))?;
        sqlx::query("DELETE FROM evm_blocks WHERE chain = $1")
            .bind(chain)
            .execute(&mut *conn)
            .await
            .map_err(Error::db("rewind"))?;
        sqlx::query("UPDATE contract_cursors SET indexed_to = NULL WHERE chain = $1")
            .bind(chain)
            .execute(&mut *conn)
            .await
            .map_err(Error::db("rewind"))?;
        return Ok(0);
    }
    unwind_reorg(conn, chain, fork_point, 0, head, head).await
}
