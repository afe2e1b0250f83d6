//! The listener of one TON network: polls the masterchain head; when it moves, asks every watched
//! account for its last transaction and pages `getTransactions` backwards to the account's
//! `(lt, hash)` cursor; follows the destination of every pending outgoing message from the
//! message's `created_lt`; then commits the poll ([`super::store::write_poll`]): raw
//! transactions, transfers through the shared state machine, projections, promotion at K
//! masterchain blocks, stuck flags and cursors, in one database transaction.
//!
//! A failed request is retried by the client on another liteserver; a poll that still fails is
//! dropped whole and repeated from the stored cursors, so nothing is skipped. A failure outside a
//! poll (identity, start-up) stops the actor, and the supervisor restarts it with backoff.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};
use sqlx::PgPool;
use ton::ton_core::types::TonAddress;
use ton_liteapi::tl::common::BlockIdExt;

use super::client::{TonClient, TxId, PAGE_SIZE};
use super::decode::{decode_transaction, TonAccount};
use super::store::{
    self, CursorUpdate, FoundDestination, PendingEdge, Poll, PolledTx, TonPolicy, TxRole,
    TON_TRANSFER_KINDS,
};
use crate::error::{Error, Result};
use crate::metrics::METRICS;

/// Requests to liteservers in flight at once during a poll (one per open connection).
const CONCURRENCY: usize = super::client::CONNECTIONS_PER_LITESERVER as usize;
/// A masterchain head that has not moved for this long is stalled (blocks come every few
/// seconds): transfers are not flagged stuck meanwhile.
pub const HEAD_STALL_AFTER: Duration = Duration::from_secs(60);
/// While the masterchain head stays where it was, polls write (stuck flags, `chain_status`) at
/// most this often instead of at every poll: nothing else can have changed.
pub const IDLE_WRITE_EVERY: Duration = Duration::from_secs(2);
/// Longest wait before restarting a failed listener.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// A watched account as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchedAccount {
    /// Incoming payments, with an optional memo prefix.
    Deposit {
        /// The account.
        address: TonAccount,
        /// Comment prefix of a matching deposit.
        memo: Option<String>,
    },
    /// Outgoing transfers.
    HotWallet {
        /// The account.
        address: TonAccount,
    },
    /// Jetton deposits to an owner, from the allow-listed masters.
    JettonOwner {
        /// The owner.
        owner: TonAccount,
        /// The jetton masters whose wallets are followed.
        masters: Vec<TonAccount>,
    },
}

/// Everything one TON listener needs.
#[derive(Debug, Clone)]
pub struct TonListenerSettings {
    /// Chain name (the `chain` label).
    pub chain: String,
    /// Configured network name (checked against the database).
    pub network: String,
    /// The liteservers, as a `global.config.json` document.
    pub global_config_json: String,
    /// Timeout of one liteserver request.
    pub request_timeout: Duration,
    /// How often the masterchain head is polled.
    pub poll_interval: Duration,
    /// Promotion rule and stuck threshold.
    pub policy: TonPolicy,
    /// The watched accounts.
    pub accounts: Vec<WatchedAccount>,
}

/// An account polled each round, with what its transactions mean.
#[derive(Debug, Clone)]
struct Tracked {
    address: TonAccount,
    role: TxRole,
}

fn to_ton_address(account: &TonAccount) -> TonAddress {
    TonAddress::new(
        account.workchain,
        ton::ton_core::cell::TonHash::from_slice_sized(&account.address),
    )
}

fn from_ton_address(address: &TonAddress) -> TonAccount {
    TonAccount {
        workchain: address.workchain,
        address: *address.hash.as_slice_sized(),
    }
}

/// The listener actor of one network.
pub struct TonListener {
    settings: TonListenerSettings,
    pool: PgPool,
    restarts: Arc<AtomicU32>,
}

impl TonListener {
    /// A listener; started with `Supervisor::start_in_arbiter`.
    pub fn new(settings: TonListenerSettings, pool: PgPool) -> Self {
        Self {
            settings,
            pool,
            restarts: Arc::new(AtomicU32::new(0)),
        }
    }
}

impl Actor for TonListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let restarts = self.restarts.load(Ordering::Relaxed);
        let delay = if restarts == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(1u64 << restarts.min(6)).min(MAX_RESTART_DELAY)
        };
        let settings = self.settings.clone();
        let pool = self.pool.clone();
        let restarts = self.restarts.clone();
        let work = async move {
            tokio::time::sleep(delay).await;
            let mut core = Core::start(settings, pool).await?;
            restarts.store(0, Ordering::Relaxed);
            core.run().await
        };
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            if let Err(err) = result {
                tracing::error!(chain = %act.settings.chain, error = %err, kind = err.kind(),
                    "TON listener failed; restarting from the stored cursors");
                ctx.stop();
            }
        }));
    }
}

impl Supervised for TonListener {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        METRICS
            .actor_restarts_total
            .with_label_values(&["ton_listener"])
            .inc();
    }
}

/// How far a destination's transactions were searched, and for which pending edges.
#[derive(Debug, Clone)]
struct Searched {
    last: TxId,
    edges: HashSet<[u8; 32]>,
}

/// The listener's working state.
struct Core {
    settings: TonListenerSettings,
    pool: PgPool,
    client: TonClient,
    tracked: Vec<Tracked>,
    cursors: HashMap<String, TxId>,
    edges: Vec<PendingEdge>,
    /// Per destination with pending edges: the newest transaction already searched and the
    /// edges it was searched for, so that a busy destination is not searched again from
    /// `created_lt` at every block. An edge learned later is searched from its own `created_lt`.
    searched: HashMap<TonAccount, Searched>,
    last_head: Option<u32>,
    head_moved_at: Instant,
    /// When the last poll was committed, and whether the head was stalled then.
    last_write: Option<(Instant, bool)>,
}

impl Core {
    async fn start(settings: TonListenerSettings, pool: PgPool) -> Result<Self> {
        let chain = settings.chain.clone();
        let client = TonClient::new(
            &chain,
            &settings.global_config_json,
            settings.request_timeout,
        )?;
        let info = client.masterchain_info().await?;
        let mut conn = pool.acquire().await.map_err(Error::db("acquire"))?;
        store::ensure_identity(&mut conn, &chain, &settings.network, info.init.root_hash.0).await?;
        let cursors = store::load_cursors(&mut conn, &chain).await?;
        let edges = store::load_pending_edges(&mut conn, &chain).await?;
        drop(conn);
        let mut tracked = Vec::new();
        for account in &settings.accounts {
            match account {
                WatchedAccount::Deposit { address, memo } => tracked.push(Tracked {
                    address: *address,
                    role: TxRole::Deposit { memo: memo.clone() },
                }),
                WatchedAccount::HotWallet { address } => tracked.push(Tracked {
                    address: *address,
                    role: TxRole::HotWallet,
                }),
                WatchedAccount::JettonOwner { owner, masters } => {
                    for master in masters {
                        let wallet = client
                            .jetton_wallet(
                                &info.last,
                                &to_ton_address(master),
                                &to_ton_address(owner),
                            )
                            .await?;
                        let wallet = from_ton_address(&wallet);
                        tracing::info!(chain = %chain, owner = %owner, master = %master,
                            jetton_wallet = %wallet, "following the owner's jetton wallet");
                        tracked.push(Tracked {
                            address: wallet,
                            role: TxRole::JettonWallet {
                                owner: *owner,
                                master: *master,
                            },
                        });
                    }
                }
            }
        }
        tracing::info!(
            chain = %chain,
            liteservers = ?client.liteservers(),
            accounts = tracked.len(),
            pending_edges = edges.len(),
            head = info.last.seqno,
            "TON listener started"
        );
        Ok(Self {
            settings,
            pool,
            client,
            tracked,
            cursors,
            edges,
            searched: HashMap::new(),
            last_head: None,
            head_moved_at: Instant::now(),
            last_write: None,
        })
    }

    async fn run(&mut self) -> Result<()> {
        loop {
            let started = Instant::now();
            match self.poll().await {
                Ok(()) => {}
                Err(err) if err.is_retryable() => {
                    tracing::warn!(chain = %self.settings.chain, error = %err,
                        "TON poll failed; repeating it from the stored cursors");
                }
                Err(err) => return Err(err),
            }
            let elapsed = started.elapsed();
            tokio::time::sleep(self.settings.poll_interval.saturating_sub(elapsed)).await;
        }
    }

    /// One round: head, accounts, edges, commit.
    async fn poll(&mut self) -> Result<()> {
        let chain = self.settings.chain.clone();
        let info = self.client.masterchain_info().await?;
        let head = info.last.seqno;
        METRICS
            .chain_head_block
            .with_label_values(&[&chain])
            .set(i64::from(head));
        if self.last_head != Some(head) {
            self.head_moved_at = Instant::now();
        }
        METRICS
            .chain_head_age_seconds
            .with_label_values(&[&chain])
            .set(self.head_moved_at.elapsed().as_secs_f64());
        let stalled = self.head_moved_at.elapsed() > HEAD_STALL_AFTER;
        METRICS
            .chain_stalled
            .with_label_values(&[&chain])
            .set(i64::from(stalled));
        let idle = self.last_head == Some(head)
            && self.last_write.is_some_and(|(at, was_stalled)| {
                was_stalled == stalled && at.elapsed() < IDLE_WRITE_EVERY
            });
        if idle {
            return Ok(());
        }
        let mut poll = Poll {
            head,
            stalled,
            ..Poll::default()
        };
        let mut searched = Vec::new();
        if self.last_head != Some(head) {
            self.fetch_accounts(&info.last, &mut poll).await?;
            searched = self.follow_edges(&info.last, &mut poll).await?;
        }
        let policy = self.settings.policy;
        let mut tx = self.pool.begin().await.map_err(Error::db("begin"))?;
        let started = Instant::now();
        let outcome = store::write_poll(&mut tx, &chain, &poll, policy, Utc::now()).await?;
        tx.commit().await.map_err(Error::db("commit_poll"))?;
        METRICS
            .db_transaction_duration_seconds
            .with_label_values(&["commit_batch"])
            .observe(started.elapsed().as_secs_f64());
        // Committed: move the in-memory state along.
        for cursor in &poll.cursors {
            self.cursors.insert(cursor.account.to_string(), cursor.last);
        }
        let found: Vec<[u8; 32]> = poll.found.iter().map(|f| f.msg_hash).collect();
        self.edges.retain(|e| !found.contains(&e.msg_hash));
        self.searched.extend(searched);
        let waiting: HashSet<TonAccount> = self.edges.iter().map(|e| e.destination).collect();
        self.searched
            .retain(|destination, _| waiting.contains(destination));
        self.last_head = Some(head);
        self.last_write = Some((Instant::now(), stalled));
        METRICS
            .indexed_block
            .with_label_values(&[&chain])
            .set(i64::from(head));
        METRICS
            .confirmed_block
            .with_label_values(&[&chain])
            .set(i64::from(head.saturating_sub(policy.confirmations)));
        METRICS
            .listener_progress_timestamp_seconds
            .with_label_values(&[&chain])
            .set(Utc::now().timestamp() as f64);
        for (kind, seconds) in &outcome.confirmation_seconds {
            METRICS
                .transfer_confirmation_seconds
                .with_label_values(&[&chain, kind])
                .observe(*seconds);
        }
        for kind in TON_TRANSFER_KINDS {
            let mut stuck = 0;
            for status in crate::metrics::TRANSFER_STATUSES {
                let (count, stuck_count) = outcome
                    .gauges
                    .iter()
                    .find(|(k, s, _, _)| k == kind && s == status)
                    .map(|(_, _, c, st)| (*c, *st))
                    .unwrap_or((0, 0));
                stuck += stuck_count;
                METRICS
                    .transfers
                    .with_label_values(&[chain.as_str(), kind, status])
                    .set(count);
            }
            METRICS
                .stuck_transfers
                .with_label_values(&[chain.as_str(), kind])
                .set(stuck);
        }
        if outcome.transactions > 0 || outcome.history_rows > 0 {
            tracing::info!(
                chain = %chain,
                head,
                transactions = outcome.transactions,
                transfers_created = outcome.created,
                history_rows = outcome.history_rows,
                pending_edges = self.edges.len(),
                "TON poll committed"
            );
        }
        Ok(())
    }

    /// New transactions of every tracked account, oldest first per account.
    async fn fetch_accounts(&mut self, block: &BlockIdExt, poll: &mut Poll) -> Result<()> {
        let client = &self.client;
        let cursors = &self.cursors;
        let results: Vec<(Tracked, Option<TxId>, Vec<PolledTx>)> =
            stream::iter(self.tracked.iter().cloned())
                .map(|tracked| async move {
                    let address = to_ton_address(&tracked.address);
                    let cursor = cursors.get(&tracked.address.to_string()).copied();
                    let Some(last) = client.last_transaction(block, &address).await? else {
                        return Ok::<_, Error>((tracked, None, Vec::new()));
                    };
                    if Some(last) == cursor {
                        return Ok((tracked, None, Vec::new()));
                    }
                    let txs =
                        fetch_back_to(client, &tracked.address, last, cursor, &tracked.role, 0)
                            .await?;
                    Ok((tracked, Some(last), txs))
                })
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
        for (tracked, last, txs) in results {
            let Some(last) = last else { continue };
            for polled in &txs {
                if polled.role == TxRole::HotWallet {
                    for edge in super::classify::hot_wallet_tx(&polled.tx).edges {
                        if !self.edges.iter().any(|e| e.msg_hash == edge.msg_hash) {
                            self.edges.push(PendingEdge {
                                msg_hash: edge.msg_hash,
                                destination: edge.destination,
                                created_lt: edge.created_lt,
                            });
                        }
                    }
                }
            }
            poll.transactions.extend(txs);
            let owner = match &tracked.role {
                TxRole::JettonWallet { owner, master } => Some((*owner, *master)),
                _ => None,
            };
            poll.cursors.push(CursorUpdate {
                account: tracked.address,
                role: tracked.role.as_str(),
                last,
                owner,
            });
        }
        Ok(())
    }

    /// Looks for the destination transactions of pending outgoing messages; returns, per
    /// destination searched, its newest transaction (to search from next time, once committed).
    async fn follow_edges(
        &mut self,
        block: &BlockIdExt,
        poll: &mut Poll,
    ) -> Result<Vec<(TonAccount, Searched)>> {
        let mut by_destination: HashMap<TonAccount, Vec<PendingEdge>> = HashMap::new();
        for edge in &self.edges {
            by_destination
                .entry(edge.destination)
                .or_default()
                .push(edge.clone());
        }
        let client = &self.client;
        let searched = &self.searched;
        type Outcome = (Option<(TonAccount, Searched)>, Vec<(PolledTx, [u8; 32])>);
        let results: Vec<Outcome> = stream::iter(by_destination)
            .map(|(destination, edges)| async move {
                let address = to_ton_address(&destination);
                let Some(last) = client.last_transaction(block, &address).await? else {
                    return Ok::<_, Error>((None, Vec::new()));
                };
                let oldest = edges.iter().map(|e| e.created_lt).min().unwrap_or(0);
                // The previous search covers these edges only if each of them was part of it.
                let before = searched
                    .get(&destination)
                    .filter(|s| edges.iter().all(|e| s.edges.contains(&e.msg_hash)))
                    .map(|s| s.last);
                if last.lt <= oldest || Some(last) == before {
                    return Ok((None, Vec::new()));
                }
                let txs = fetch_back_to(
                    client,
                    &destination,
                    last,
                    before,
                    &TxRole::Destination,
                    oldest,
                )
                .await?;
                let found = txs
                    .into_iter()
                    .filter_map(|polled| {
                        let hash = polled.tx.in_msg.as_ref()?.hash;
                        edges
                            .iter()
                            .any(|e| e.msg_hash == hash)
                            .then_some((polled, hash))
                    })
                    .collect();
                let covered = Searched {
                    last,
                    edges: edges.iter().map(|e| e.msg_hash).collect(),
                };
                Ok((Some((destination, covered)), found))
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut newest = Vec::new();
        for (searched_to, found) in results {
            newest.extend(searched_to);
            for (polled, msg_hash) in found {
                poll.found.push(FoundDestination {
                    msg_hash,
                    tx_index: poll.transactions.len(),
                });
                poll.transactions.push(polled);
            }
        }
        Ok(newest)
    }
}

/// Pages an account's transactions backwards from `last` until `cursor` (exclusive), or until
/// transactions older than `min_lt` (for destinations), or to the account's first transaction;
/// returns them oldest first.
async fn fetch_back_to(
    client: &TonClient,
    account: &TonAccount,
    last: TxId,
    cursor: Option<TxId>,
    role: &TxRole,
    min_lt: u64,
) -> Result<Vec<PolledTx>> {
    let address = to_ton_address(account);
    let mut out = Vec::new();
    let mut next = Some(last);
    'pages: while let Some(from) = next.take() {
        let page = client.transactions(&address, from, PAGE_SIZE).await?;
        if page.is_empty() {
            break;
        }
        for raw in page {
            if Some(raw.id) == cursor {
                break 'pages;
            }
            if let Some(cursor) = cursor {
                if raw.id.lt < cursor.lt {
                    return Err(Error::Inconsistent {
                        chain: client.chain().to_owned(),
                        block: 0,
                        message: format!(
                            "account {account}: paging back from lt {} passed the stored cursor lt {} without meeting it",
                            last.lt, cursor.lt
                        ),
                    });
                }
            }
            if raw.id.lt <= min_lt {
                break 'pages;
            }
            let tx = decode_transaction(&raw.boc, account.workchain).map_err(|e| {
                Error::Inconsistent {
                    chain: client.chain().to_owned(),
                    block: 0,
                    message: format!("account {account}: transaction lt {}: {e}", raw.id.lt),
                }
            })?;
            next = (tx.prev_lt != 0).then_some(TxId {
                lt: tx.prev_lt,
                hash: tx.prev_hash,
            });
            out.push(PolledTx {
                role: role.clone(),
                raw,
                tx,
            });
        }
    }
    out.reverse();
    Ok(out)
}
