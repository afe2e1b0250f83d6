//! Postgres side of a TON network: identity, cursors, and one transaction per poll that stores
//! the raw transactions, creates and moves transfers through the shared state machine, fills the
//! `ton_deposits` / `ton_transfers` projections, promotes at K masterchain blocks, flags stuck
//! transfers, advances the cursors, and writes history + outbox rows.
//!
//! Everything of a poll commits together or not at all, and every insert is keyed by on-chain
//! identity, so a poll repeated after a crash (from the old cursors) records nothing twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, Row};

use super::classify::{self, Delivery};
use super::client::{RawTransaction, TxId};
use super::decode::{TonAccount, TonTransaction};
use crate::error::{Error, Result};
use crate::reconciler::policy::{Step, TransferStatus};
use crate::writer::transfers::{
    allocate, apply_steps, topic_for, write_history, HistoryEntry, TransferStep, TransferSummary,
    PHASE_INCLUDED, PHASE_SETTLED,
};

/// Transfer kinds of TON networks (the `kind` label), as in the `transfers` table.
pub const TON_TRANSFER_KINDS: &[&str] = &["ton_deposit", "jetton_deposit", "ton_outgoing"];

/// Why a transaction was fetched: the role of the account it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxRole {
    /// A `deposit` account, with its memo prefix.
    Deposit {
        /// Comment prefix a deposit must carry to match (none: every deposit matches).
        memo: Option<String>,
    },
    /// A `hot_wallet` account.
    HotWallet,
    /// The jetton wallet of a watched owner.
    JettonWallet {
        /// The watched owner.
        owner: TonAccount,
        /// The allow-listed jetton master.
        master: TonAccount,
    },
    /// The destination of an outgoing message, fetched to follow it.
    Destination,
}

impl TxRole {
    /// The role as stored on cursors.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Deposit { .. } => "deposit",
            Self::HotWallet => "hot_wallet",
            Self::JettonWallet { .. } => "jetton_wallet",
            Self::Destination => "destination",
        }
    }
}

/// One fetched transaction with its decoding.
#[derive(Debug, Clone)]
pub struct PolledTx {
    /// Why it was fetched.
    pub role: TxRole,
    /// As received.
    pub raw: RawTransaction,
    /// Decoded.
    pub tx: TonTransaction,
}

/// An outgoing message still waiting for its destination's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEdge {
    /// Hash of the message.
    pub msg_hash: [u8; 32],
    /// Where it goes.
    pub destination: TonAccount,
    /// When it was created (the destination's transaction has a larger lt).
    pub created_lt: u64,
}

/// A destination transaction that consumed a pending message.
#[derive(Debug, Clone)]
pub struct FoundDestination {
    /// The message.
    pub msg_hash: [u8; 32],
    /// Index into [`Poll::transactions`] of the destination's transaction.
    pub tx_index: usize,
}

/// A new cursor position of a watched (or derived) account.
#[derive(Debug, Clone)]
pub struct CursorUpdate {
    /// The account.
    pub account: TonAccount,
    /// Its role.
    pub role: &'static str,
    /// Its newest stored transaction.
    pub last: TxId,
    /// For jetton wallets: the owner and the master.
    pub owner: Option<(TonAccount, TonAccount)>,
}

/// Everything one poll found.
#[derive(Debug, Clone, Default)]
pub struct Poll {
    /// Masterchain seqno of the poll: "first seen at" of everything in it.
    pub head: u32,
    /// Transactions, oldest first per account.
    pub transactions: Vec<PolledTx>,
    /// Destinations found for pending messages.
    pub found: Vec<FoundDestination>,
    /// Cursors to move.
    pub cursors: Vec<CursorUpdate>,
    /// The masterchain head has not moved for a while: nobody is flagged stuck meanwhile.
    pub stalled: bool,
}

/// The TON reconciliation rule of a network.
#[derive(Debug, Clone, Copy)]
pub struct TonPolicy {
    /// K: masterchain blocks after the one a transfer was seen at before it is confirmed.
    pub confirmations: u32,
    /// A transfer not final after this long is flagged stuck.
    pub stuck_after: Duration,
}

/// What a committed poll changed (for metrics and logs).
#[derive(Debug, Clone, Default)]
pub struct PollOutcome {
    /// Raw transactions newly stored.
    pub transactions: u64,
    /// Transfers created.
    pub created: u64,
    /// History rows written.
    pub history_rows: usize,
    /// Time to confirmation per kind of each transfer confirmed.
    pub confirmation_seconds: Vec<(String, f64)>,
    /// Open transfers by (kind, status) and stuck ones by kind, after the poll.
    pub gauges: Vec<(String, String, i64, i64)>,
}

fn raw(account: &TonAccount) -> String {
    account.to_string()
}

fn decimal(value: u128) -> BigDecimal {
    value.to_string().parse().unwrap_or_default()
}

fn identity_error(chain: &str, message: String) -> Error {
    Error::NetworkMismatch {
        chain: chain.to_owned(),
        message,
    }
}

/// Records the network's identity (configured network name, zero state root hash) on first use
/// and refuses a database that belongs to another network.
pub async fn ensure_identity(
    conn: &mut PgConnection,
    chain: &str,
    network: &str,
    zero_state: [u8; 32],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO chains (name, kind, genesis_hash, network) VALUES ($1, 'ton', $2, $3)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(chain)
    .bind(zero_state.as_slice())
    .bind(network)
    .execute(&mut *conn)
    .await
    .map_err(Error::db("ensure_identity"))?;
    let row = sqlx::query("SELECT kind, genesis_hash, network FROM chains WHERE name = $1")
        .bind(chain)
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::db("ensure_identity"))?;
    let kind: String = row.get("kind");
    let stored: Vec<u8> = row.get("genesis_hash");
    let stored_network: Option<String> = row.get("network");
    if kind != "ton" || stored != zero_state || stored_network.as_deref() != Some(network) {
        return Err(identity_error(
            chain,
            format!(
                "identity mismatch: database has {kind} network {} zero state {}, liteservers serve network {network} zero state {}; refusing to index another network into this database",
                stored_network.unwrap_or_default(),
                hex::encode(&stored),
                hex::encode(zero_state)
            ),
        ));
    }
    sqlx::query("INSERT INTO chain_status (chain) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(chain)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("ensure_identity"))?;
    Ok(())
}

/// The stored cursors of a network's accounts, by raw address.
pub async fn load_cursors(conn: &mut PgConnection, chain: &str) -> Result<HashMap<String, TxId>> {
    let rows = sqlx::query(
        "SELECT account, last_lt::text AS lt, last_hash FROM ton_account_cursors
         WHERE chain = $1 AND last_lt IS NOT NULL",
    )
    .bind(chain)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("load_cursors"))?;
    let mut out = HashMap::new();
    for row in rows {
        let lt: String = row.get("lt");
        let hash: Vec<u8> = row.get("last_hash");
        if let (Ok(lt), Ok(hash)) = (lt.parse(), <[u8; 32]>::try_from(hash.as_slice())) {
            out.insert(row.get("account"), TxId { lt, hash });
        }
    }
    Ok(out)
}

/// The outgoing messages still pending.
pub async fn load_pending_edges(conn: &mut PgConnection, chain: &str) -> Result<Vec<PendingEdge>> {
    let rows = sqlx::query(
        "SELECT msg_hash, destination, created_lt::text AS created_lt FROM ton_transfers
         WHERE chain = $1 AND outcome = 'pending'",
    )
    .bind(chain)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("load_pending_edges"))?;
    let mut out = Vec::new();
    for row in rows {
        let hash: Vec<u8> = row.get("msg_hash");
        let destination: String = row.get("destination");
        let created_lt: String = row.get("created_lt");
        let (Ok(msg_hash), Some(destination), Ok(created_lt)) = (
            <[u8; 32]>::try_from(hash.as_slice()),
            parse_raw(&destination),
            created_lt.parse(),
        ) else {
            continue;
        };
        out.push(PendingEdge {
            msg_hash,
            destination,
            created_lt,
        });
    }
    Ok(out)
}

/// Parses a raw `wc:hex` address.
pub fn parse_raw(text: &str) -> Option<TonAccount> {
    let (workchain, hash) = text.split_once(':')?;
    let address = <[u8; 32]>::try_from(hex::decode(hash).ok()?.as_slice()).ok()?;
    Some(TonAccount {
        workchain: workchain.parse().ok()?,
        address,
    })
}

/// Registers an outgoing transfer by the TEP-467 normalised hash of its external message, before
/// it lands: a `ton_outgoing` transfer in `pending` (stuck if it never lands). Registering the
/// same hash twice returns the existing transfer.
pub async fn register_external(
    conn: &mut PgConnection,
    chain: &str,
    normalized_hash: [u8; 32],
    label: Option<&str>,
    now: DateTime<Utc>,
) -> Result<i64> {
    let identity = format!("ext:{}", hex::encode(normalized_hash));
    if let Some(id) = sqlx::query_scalar::<_, i64>(
        "SELECT id FROM transfers WHERE chain = $1 AND kind = 'ton_outgoing' AND identity = $2",
    )
    .bind(chain)
    .bind(&identity)
    .fetch_optional(&mut *conn)
    .await
    .map_err(Error::db("register_external"))?
    {
        return Ok(id);
    }
    // Registered after it landed: the wallet's transaction is already stored.
    let landed = sqlx::query(
        "SELECT account, lt::text AS lt, hash, mc_seqno_seen, decoded FROM ton_transactions
         WHERE chain = $1 AND normalized_ext_hash = $2 ORDER BY lt LIMIT 1",
    )
    .bind(chain)
    .bind(normalized_hash.as_slice())
    .fetch_optional(&mut *conn)
    .await
    .map_err(Error::db("register_external"))?;
    let mut details = json!({"registered": true, "label": label});
    let (status, block, reason, tx_hash) = match &landed {
        None => (
            TransferStatus::Pending,
            None,
            "registered by external message hash".to_owned(),
            normalized_hash.to_vec(),
        ),
        Some(row) => {
            let account: String = row.get("account");
            let lt: String = row.get("lt");
            let seen: i64 = row.get("mc_seqno_seen");
            details["account"] = json!(account);
            details["lt"] = json!(lt);
            let decoded: serde_json::Value = row.get("decoded");
            let aborted = decoded["description"]["aborted"] == true;
            if aborted {
                (
                    TransferStatus::Failed,
                    Some(u64::try_from(seen).unwrap_or(0)),
                    "aborted".to_owned(),
                    row.get("hash"),
                )
            } else {
                (
                    TransferStatus::Confirming,
                    Some(u64::try_from(seen).unwrap_or(0)),
                    format!("registered after it landed in {account} at lt {lt}"),
                    row.get("hash"),
                )
            }
        }
    };
    let (id, _) = allocate(conn, chain, 1, 0).await?;
    sqlx::query(
        "INSERT INTO transfers (chain, id, kind, identity, status, failure_reason, tx_hash, block_number,
                                details, first_seen_at, included_at, updated_at)
         VALUES ($1, $2, 'ton_outgoing', $3, $4, CASE WHEN $4 = 'failed' THEN $5 END, $6, $7, $8, $9,
                 CASE WHEN $4 = 'confirming' THEN $9 END, $9)",
    )
    .bind(chain)
    .bind(id)
    .bind(&identity)
    .bind(status.as_str())
    .bind(&reason)
    .bind(tx_hash)
    .bind(block.map(|b| i64::try_from(b).unwrap_or(i64::MAX)))
    .bind(details)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(Error::db("register_external"))?;
    write_history(
        conn,
        chain,
        vec![HistoryEntry {
            transfer_id: id,
            kind: "ton_outgoing".into(),
            identity,
            from: None,
            to: status,
            stuck: false,
            reason,
            block,
            topic: topic_for(status),
            order: (block.unwrap_or(0), PHASE_INCLUDED, 0, 0, id),
        }],
        now,
    )
    .await?;
    Ok(id)
}

/// A transfer a poll creates.
struct NewTransfer {
    kind: &'static str,
    identity: String,
    status: TransferStatus,
    reason: String,
    tx_hash: [u8; 32],
    amount: u128,
    details: serde_json::Value,
    lt: u64,
    projection: Projection,
}

enum Projection {
    Deposit {
        kind: &'static str,
        account: String,
        tx_account: String,
        sender: Option<String>,
        jetton_master: Option<String>,
        comment: Option<String>,
        memo_matched: Option<bool>,
        forward_ton_amount: Option<u128>,
        notified: Option<bool>,
        utime: u32,
    },
    Edge {
        edge: classify::OutgoingEdge,
        source: String,
        source_lt: u64,
        ext_hash: Option<[u8; 32]>,
    },
}

fn transfers_of(poll: &Poll) -> Vec<NewTransfer> {
    let mut out = Vec::new();
    for polled in &poll.transactions {
        let tx = &polled.tx;
        let account = raw(&tx.account);
        match &polled.role {
            TxRole::Deposit { memo } => {
                let Some(deposit) = classify::ton_deposit(tx, memo.as_deref()) else {
                    continue;
                };
                let (status, reason) = initial(deposit.delivery, poll.head);
                out.push(NewTransfer {
                    kind: "ton_deposit",
                    identity: format!("{account}:{}", tx.lt),
                    status,
                    reason,
                    tx_hash: tx.hash,
                    amount: deposit.amount,
                    details: json!({
                        "account": account, "lt": tx.lt.to_string(), "sender": deposit.sender,
                        "comment": deposit.comment, "memo_matched": deposit.memo_matched,
                    }),
                    lt: tx.lt,
                    projection: Projection::Deposit {
                        kind: "ton",
                        account: account.clone(),
                        tx_account: account.clone(),
                        sender: Some(deposit.sender),
                        jetton_master: None,
                        comment: deposit.comment,
                        memo_matched: deposit.memo_matched,
                        forward_ton_amount: None,
                        notified: None,
                        utime: tx.now,
                    },
                });
            }
            TxRole::JettonWallet { owner, master } => {
                let Some(deposit) = classify::jetton_deposit(tx, owner) else {
                    continue;
                };
                let (status, reason) = initial(deposit.delivery, poll.head);
                out.push(NewTransfer {
                    kind: "jetton_deposit",
                    identity: format!("{account}:{}", tx.lt),
                    status,
                    reason,
                    tx_hash: tx.hash,
                    amount: deposit.amount,
                    details: json!({
                        "account": raw(owner), "jetton_wallet": account, "jetton_master": raw(master),
                        "lt": tx.lt.to_string(), "sender": deposit.sender, "comment": deposit.comment,
                        "forward_ton_amount": deposit.forward_ton_amount.to_string(),
                        "notified": deposit.notified,
                    }),
                    lt: tx.lt,
                    projection: Projection::Deposit {
                        kind: "jetton",
                        account: raw(owner),
                        tx_account: account.clone(),
                        sender: deposit.sender,
                        jetton_master: Some(raw(master)),
                        comment: deposit.comment,
                        memo_matched: None,
                        forward_ton_amount: Some(deposit.forward_ton_amount),
                        notified: Some(deposit.notified),
                        utime: tx.now,
                    },
                });
            }
            TxRole::HotWallet => {
                let wallet = classify::hot_wallet_tx(tx);
                for edge in wallet.edges {
                    out.push(NewTransfer {
                        kind: "ton_outgoing",
                        identity: format!("msg:{}", hex::encode(edge.msg_hash)),
                        status: TransferStatus::Pending,
                        reason: format!("sent at lt {}, waiting for the destination", tx.lt),
                        tx_hash: tx.hash,
                        amount: edge.value,
                        details: json!({
                            "source": account, "destination": raw(&edge.destination),
                            "lt": tx.lt.to_string(), "created_lt": edge.created_lt.to_string(),
                            "bounce": edge.bounce, "comment": edge.comment,
                        }),
                        lt: tx.lt,
                        projection: Projection::Edge {
                            edge,
                            source: account.clone(),
                            source_lt: tx.lt,
                            ext_hash: wallet.external_hash,
                        },
                    });
                }
            }
            TxRole::Destination => {}
        }
    }
    out
}

fn initial(delivery: Delivery, head: u32) -> (TransferStatus, String) {
    match delivery.failure_reason() {
        None => (
            TransferStatus::Confirming,
            format!("seen at masterchain block {head}"),
        ),
        Some(reason) => (TransferStatus::Failed, reason),
    }
}

/// Commits one poll; see the module documentation.
pub async fn write_poll(
    conn: &mut PgConnection,
    chain: &str,
    poll: &Poll,
    policy: TonPolicy,
    now: DateTime<Utc>,
) -> Result<PollOutcome> {
    let head = u64::from(poll.head);
    let mut outcome = PollOutcome::default();
    let mut history: Vec<HistoryEntry> = Vec::new();

    // 1. Raw transactions.
    if !poll.transactions.is_empty() {
        let mut accounts = Vec::new();
        let mut lts = Vec::new();
        let mut hashes = Vec::new();
        let mut prev_lts = Vec::new();
        let mut prev_hashes = Vec::new();
        let mut utimes = Vec::new();
        let mut bocs = Vec::new();
        let mut decoded = Vec::new();
        let mut in_hashes: Vec<Option<Vec<u8>>> = Vec::new();
        let mut ext_hashes: Vec<Option<Vec<u8>>> = Vec::new();
        for polled in &poll.transactions {
            let tx = &polled.tx;
            accounts.push(raw(&tx.account));
            lts.push(tx.lt.to_string());
            hashes.push(tx.hash.to_vec());
            prev_lts.push(tx.prev_lt.to_string());
            prev_hashes.push(tx.prev_hash.to_vec());
            utimes.push(DateTime::<Utc>::from_timestamp(i64::from(tx.now), 0).unwrap_or_default());
            bocs.push(polled.raw.boc.clone());
            decoded.push(serde_json::to_value(tx).unwrap_or_default());
            in_hashes.push(tx.in_msg.as_ref().map(|m| m.hash.to_vec()));
            ext_hashes.push(
                tx.in_msg
                    .as_ref()
                    .and_then(|m| m.normalized_hash)
                    .map(|h| h.to_vec()),
            );
        }
        let inserted = sqlx::query(
            "INSERT INTO ton_transactions (chain, account, lt, hash, prev_lt, prev_hash, utime,
                                           mc_seqno_seen, boc, decoded, in_msg_hash, normalized_ext_hash)
             SELECT $1, a, l::numeric, h, pl::numeric, ph, u, $8, b, d, i, e
             FROM UNNEST($2::text[], $3::text[], $4::bytea[], $5::text[], $6::bytea[],
                         $7::timestamptz[], $9::bytea[], $10::jsonb[], $11::bytea[], $12::bytea[])
                  AS x (a, l, h, pl, ph, u, b, d, i, e)
             ON CONFLICT DO NOTHING",
        )
        .bind(chain)
        .bind(&accounts)
        .bind(&lts)
        .bind(&hashes)
        .bind(&prev_lts)
        .bind(&prev_hashes)
        .bind(&utimes)
        .bind(i64::from(poll.head))
        .bind(&bocs)
        .bind(&decoded)
        .bind(&in_hashes)
        .bind(&ext_hashes)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("ton_transactions"))?;
        outcome.transactions = inserted.rows_affected();
    }

    // 2. New transfers (deposits and outgoing edges), skipping those already recorded.
    let candidates = transfers_of(poll);
    let identities: Vec<String> = candidates.iter().map(|t| t.identity.clone()).collect();
    let existing: HashSet<String> = sqlx::query_scalar(
        "SELECT identity FROM transfers WHERE chain = $1 AND identity = ANY($2)
           AND kind IN ('ton_deposit', 'jetton_deposit', 'ton_outgoing')",
    )
    .bind(chain)
    .bind(&identities)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("existing_transfers"))?
    .into_iter()
    .collect();
    let fresh: Vec<NewTransfer> = candidates
        .into_iter()
        .filter(|t| !existing.contains(&t.identity))
        .collect();
    if !fresh.is_empty() {
        let (first_id, _) = allocate(conn, chain, fresh.len(), 0).await?;
        for (offset, transfer) in fresh.iter().enumerate() {
            let id = first_id + offset as i64;
            insert_transfer(conn, chain, id, transfer, head, now).await?;
            history.push(HistoryEntry {
                transfer_id: id,
                kind: transfer.kind.to_owned(),
                identity: transfer.identity.clone(),
                from: None,
                to: transfer.status,
                stuck: false,
                reason: transfer.reason.clone(),
                block: Some(head),
                topic: topic_for(transfer.status),
                order: (head, PHASE_INCLUDED, transfer.lt, offset as u64, id),
            });
        }
        outcome.created = fresh.len() as u64;
    }

    // 3. Destinations found: the edge is delivered, bounced or failed.
    let mut steps: Vec<TransferStep> = Vec::new();
    for found in &poll.found {
        let Some(polled) = poll.transactions.get(found.tx_index) else {
            continue;
        };
        let delivery = classify::delivery(&polled.tx);
        let (outcome_text, exit_code) = match delivery {
            Delivery::Delivered => ("delivered", None),
            Delivery::Bounced => ("bounced", None),
            Delivery::Failed(code) => ("failed", Some(code)),
        };
        let bounce_msg = classify::bounced_message(&polled.tx).map(|h| h.to_vec());
        let row = sqlx::query(
            "UPDATE ton_transfers SET outcome = $3, dest_lt = $4::numeric, dest_tx_hash = $5,
                    exit_code = $6, bounce_msg_hash = $7, updated_at = $8
             WHERE chain = $1 AND msg_hash = $2 AND outcome = 'pending'
             RETURNING transfer_id",
        )
        .bind(chain)
        .bind(found.msg_hash.as_slice())
        .bind(outcome_text)
        .bind(polled.tx.lt.to_string())
        .bind(polled.tx.hash.as_slice())
        .bind(exit_code)
        .bind(bounce_msg)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::db("follow_edge"))?;
        let Some(row) = row else { continue };
        let (to, reason) = match delivery.failure_reason() {
            None => (
                TransferStatus::Confirming,
                format!(
                    "delivered: {} consumed it at lt {}",
                    raw(&polled.tx.account),
                    polled.tx.lt
                ),
            ),
            Some(reason) => (TransferStatus::Failed, reason),
        };
        steps.push(TransferStep {
            transfer_id: row.get("transfer_id"),
            step: Step::Transition {
                from: TransferStatus::Pending,
                to,
                reason,
                block: Some(head),
                block_hash: None,
            },
        });
    }

    // 4. Bounces coming back to hot wallets: link the third transaction.
    for polled in &poll.transactions {
        if polled.role != TxRole::HotWallet {
            continue;
        }
        let wallet = classify::hot_wallet_tx(&polled.tx);
        if let Some(bounce) = wallet.bounce_back {
            sqlx::query(
                "UPDATE ton_transfers SET bounce_lt = $3::numeric, bounce_tx_hash = $4, updated_at = $5
                 WHERE chain = $1 AND bounce_msg_hash = $2 AND bounce_lt IS NULL",
            )
            .bind(chain)
            .bind(bounce.as_slice())
            .bind(polled.tx.lt.to_string())
            .bind(polled.tx.hash.as_slice())
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(Error::db("link_bounce"))?;
        }
        // 5. Registered external messages landing.
        if let (Some(ext), Some(delivery)) = (wallet.external_hash, wallet.delivery) {
            let identity = format!("ext:{}", hex::encode(ext));
            let row = sqlx::query(
                "SELECT id FROM transfers WHERE chain = $1 AND kind = 'ton_outgoing' AND identity = $2
                   AND status = 'pending'",
            )
            .bind(chain)
            .bind(&identity)
            .fetch_optional(&mut *conn)
            .await
            .map_err(Error::db("registered_external"))?;
            if let Some(row) = row {
                let (to, reason) = match delivery.failure_reason() {
                    None => (
                        TransferStatus::Confirming,
                        format!(
                            "landed in {} at lt {}",
                            raw(&polled.tx.account),
                            polled.tx.lt
                        ),
                    ),
                    Some(reason) => (TransferStatus::Failed, reason),
                };
                sqlx::query(
                    "UPDATE transfers SET details = details || $3 WHERE chain = $1 AND id = $2",
                )
                .bind(chain)
                .bind(row.get::<i64, _>("id"))
                .bind(
                    json!({"account": raw(&polled.tx.account), "lt": polled.tx.lt.to_string(),
                             "tx_hash": hex::encode(polled.tx.hash)}),
                )
                .execute(&mut *conn)
                .await
                .map_err(Error::db("registered_external"))?;
                steps.push(TransferStep {
                    transfer_id: row.get("id"),
                    step: Step::Transition {
                        from: TransferStatus::Pending,
                        to,
                        reason,
                        block: Some(head),
                        block_hash: None,
                    },
                });
            }
        }
    }
    let mut summary = TransferSummary::default();
    apply_steps(conn, chain, &steps, head, now, &mut history, &mut summary).await?;
    // K counts from the masterchain block at which the deciding transaction was seen.
    let moved: Vec<i64> = steps.iter().map(|s| s.transfer_id).collect();
    sqlx::query(
        "UPDATE transfers SET block_number = $3, first_seen_block = COALESCE(first_seen_block, $3)
         WHERE chain = $1 AND id = ANY($2) AND status = 'confirming'",
    )
    .bind(chain)
    .bind(&moved)
    .bind(i64::try_from(head).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await
    .map_err(Error::db("edge_block"))?;

    // 6. Promotion at K further masterchain blocks.
    let threshold = head.saturating_sub(u64::from(policy.confirmations));
    let promoted = sqlx::query(
        "UPDATE transfers SET status = 'confirmed', stuck = false, confirmed_at = $3, updated_at = $3
         WHERE chain = $1 AND status = 'confirming' AND block_number <= $2
           AND kind IN ('ton_deposit', 'jetton_deposit', 'ton_outgoing')
         RETURNING id, kind, identity, block_number, first_seen_at",
    )
    .bind(chain)
    .bind(i64::try_from(threshold).unwrap_or(i64::MAX))
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("confirm"))?;
    for row in promoted {
        let id: i64 = row.get("id");
        let kind: String = row.get("kind");
        let seen: Option<i64> = row.get("block_number");
        let first_seen: DateTime<Utc> = row.get("first_seen_at");
        summary.confirmation_seconds.push((
            kind.clone(),
            (now - first_seen).num_milliseconds().max(0) as f64 / 1000.0,
        ));
        history.push(HistoryEntry {
            transfer_id: id,
            kind,
            identity: row.get("identity"),
            from: Some(TransferStatus::Confirming),
            to: TransferStatus::Confirmed,
            stuck: false,
            reason: format!(
                "{} masterchain blocks after block {}",
                policy.confirmations,
                seen.unwrap_or_default()
            ),
            block: Some(head),
            topic: topic_for(TransferStatus::Confirmed),
            order: (head, PHASE_SETTLED, 0, 0, id),
        });
    }

    // 7. Stuck: open transfers older than stuck_after (not while the masterchain is stalled:
    // then nothing can progress, and the stall has its own alert).
    let stuck_before = now
        - chrono::Duration::from_std(policy.stuck_after)
            .unwrap_or_else(|_| chrono::Duration::zero());
    let overdue: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, status FROM transfers
         WHERE chain = $1 AND NOT stuck AND status IN ('pending', 'confirming')
           AND kind IN ('ton_deposit', 'jetton_deposit', 'ton_outgoing') AND first_seen_at < $2
         ORDER BY id",
    )
    .bind(chain)
    .bind(stuck_before)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("find_stuck"))?;
    let overdue = if poll.stalled { Vec::new() } else { overdue };
    let stuck_steps: Vec<TransferStep> = overdue
        .into_iter()
        .map(|(id, status)| TransferStep {
            transfer_id: id,
            step: Step::MarkStuck {
                reason: format!("{status} for more than {}", humanize(policy.stuck_after)),
            },
        })
        .collect();
    apply_steps(
        conn,
        chain,
        &stuck_steps,
        head,
        now,
        &mut history,
        &mut summary,
    )
    .await?;

    // 8. Cursors and progress.
    for cursor in &poll.cursors {
        sqlx::query(
            "INSERT INTO ton_account_cursors (chain, account, role, last_lt, last_hash, owner, jetton_master, updated_at)
             VALUES ($1, $2, $3, $4::numeric, $5, $6, $7, $8)
             ON CONFLICT (chain, account) DO UPDATE
               SET last_lt = EXCLUDED.last_lt, last_hash = EXCLUDED.last_hash, role = EXCLUDED.role,
                   owner = EXCLUDED.owner, jetton_master = EXCLUDED.jetton_master,
                   updated_at = EXCLUDED.updated_at",
        )
        .bind(chain)
        .bind(raw(&cursor.account))
        .bind(cursor.role)
        .bind(cursor.last.lt.to_string())
        .bind(cursor.last.hash.as_slice())
        .bind(cursor.owner.map(|(owner, _)| raw(&owner)))
        .bind(cursor.owner.map(|(_, master)| raw(&master)))
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("ton_cursor"))?;
    }
    sqlx::query(
        "UPDATE chain_status SET head_block = $2, indexed_block = $2, confirmed_block = $3,
                head_seen_at = CASE WHEN head_block IS DISTINCT FROM $2 THEN $4 ELSE head_seen_at END,
                stalled = $5, updated_at = $4
         WHERE chain = $1",
    )
    .bind(chain)
    .bind(i64::from(poll.head))
    .bind(i64::try_from(threshold).unwrap_or(i64::MAX))
    .bind(now)
    .bind(poll.stalled)
    .execute(&mut *conn)
    .await
    .map_err(Error::db("chain_status"))?;

    outcome.history_rows = write_history(conn, chain, history, now).await?;
    outcome.confirmation_seconds = summary.confirmation_seconds;
    outcome.gauges = sqlx::query_as(
        "SELECT kind, status, count(*), count(*) FILTER (WHERE stuck) FROM transfers
         WHERE chain = $1 GROUP BY kind, status",
    )
    .bind(chain)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("transfer_gauges"))?;
    Ok(outcome)
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 60 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

async fn insert_transfer(
    conn: &mut PgConnection,
    chain: &str,
    id: i64,
    transfer: &NewTransfer,
    head: u64,
    now: DateTime<Utc>,
) -> Result<()> {
    let failed = transfer.status == TransferStatus::Failed;
    sqlx::query(
        "INSERT INTO transfers (chain, id, kind, identity, status, failure_reason, tx_hash, block_number,
                                amount, details, first_seen_at, first_seen_block, included_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $8,
                 CASE WHEN $5 = 'confirming' THEN $11 END, $11)",
    )
    .bind(chain)
    .bind(id)
    .bind(transfer.kind)
    .bind(&transfer.identity)
    .bind(transfer.status.as_str())
    .bind(failed.then(|| transfer.reason.clone()))
    .bind(transfer.tx_hash.as_slice())
    .bind(i64::try_from(head).unwrap_or(i64::MAX))
    .bind(decimal(transfer.amount))
    .bind(&transfer.details)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(Error::db("insert_transfer"))?;
    match &transfer.projection {
        Projection::Deposit {
            kind,
            account,
            tx_account,
            sender,
            jetton_master,
            comment,
            memo_matched,
            forward_ton_amount,
            notified,
            utime,
        } => {
            sqlx::query(
                "INSERT INTO ton_deposits (chain, transfer_id, kind, account, tx_account, lt, tx_hash, sender,
                                           amount, jetton_master, comment, memo_matched, forward_ton_amount,
                                           notified, utime, mc_seqno_seen)
                 VALUES ($1, $2, $3, $4, $5, $6::numeric, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT DO NOTHING",
            )
            .bind(chain)
            .bind(id)
            .bind(kind)
            .bind(account)
            .bind(tx_account)
            .bind(transfer.lt.to_string())
            .bind(transfer.tx_hash.as_slice())
            .bind(sender)
            .bind(decimal(transfer.amount))
            .bind(jetton_master)
            .bind(comment)
            .bind(memo_matched)
            .bind(forward_ton_amount.map(decimal))
            .bind(notified)
            .bind(DateTime::<Utc>::from_timestamp(i64::from(*utime), 0).unwrap_or_default())
            .bind(i64::try_from(head).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await
            .map_err(Error::db("ton_deposits"))?;
        }
        Projection::Edge {
            edge,
            source,
            source_lt,
            ext_hash,
        } => {
            sqlx::query(
                "INSERT INTO ton_transfers (chain, transfer_id, msg_hash, source, destination, value, bounce,
                                            comment, created_lt, source_lt, source_tx_hash,
                                            ext_normalized_hash, outcome, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::numeric, $10::numeric, $11, $12, 'pending', $13)
                 ON CONFLICT DO NOTHING",
            )
            .bind(chain)
            .bind(id)
            .bind(edge.msg_hash.as_slice())
            .bind(source)
            .bind(raw(&edge.destination))
            .bind(decimal(edge.value))
            .bind(edge.bounce)
            .bind(&edge.comment)
            .bind(edge.created_lt.to_string())
            .bind(source_lt.to_string())
            .bind(transfer.tx_hash.as_slice())
            .bind(ext_hash.map(|h| h.to_vec()))
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(Error::db("ton_transfers"))?;
        }
    }
    Ok(())
}
