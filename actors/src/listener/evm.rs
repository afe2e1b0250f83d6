//! The EVM listener: backfill in adaptive `eth_getLogs` ranges, then follow the head block by
//! block with reorg detection.
//!
//! Contracts are followed in groups by cursor. The *front* group (the contracts with the highest
//! cursor) walks towards the head: in ranges while it is deeper than the reorg window below the
//! head (those blocks are taken as final), then header by header, each header checked against the
//! [`ReorgWindow`]. Contracts behind the front (added to the configuration later, or producer
//! clones discovered through `LogProducer`) backfill on their own up to the front, one range per
//! step, while the front stays live. Every batch goes to the reconciler and the listener waits for
//! the store writer's acknowledgement before sending the next: at most one batch is in flight.
//! While catching up, the next range is already being fetched during that wait (one range ahead).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use alloy::primitives::{Address, BloomInput, B256};
use alloy::rpc::types::{Filter, Log};
use futures::future::try_join_all;
use sqlx::PgPool;
use tokio::sync::Notify;

use super::range::BlockRange;
use super::rpc::{Endpoint, EvmRpc, Header, LogsAnswer};
use crate::chain::{
    BlockRef, ChainEvent, CursorAdvance, DiscoveredContract, ForkSearch, RawLog, ReorgWindow,
    WindowCheck,
};
use crate::contracts::{decode_log, DecodeOutcome};
use crate::error::{Error, Result};
use crate::messages::{ApplyChainEvent, Checkpoint};
use crate::metrics::METRICS;
use crate::writer::store::{self, ContractCursor};

/// Most headers fetched in one live step.
pub const LIVE_BATCH_BLOCKS: u64 = 64;
/// How long the listener waits for its batch to be committed before giving up (and restarting).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest pause between supervisor restarts.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// Everything one EVM listener needs to know about its chain.
#[derive(Debug, Clone)]
pub struct EvmListenerSettings {
    /// Chain name (metric label, database key).
    pub chain: String,
    /// Expected `eth_chainId`.
    pub chain_id: u64,
    /// RPC endpoints, in failover order.
    pub endpoints: Vec<Endpoint>,
    /// Optional WebSocket endpoint for head notifications.
    pub ws_endpoint: Option<Endpoint>,
    /// Pause between polls when nothing is new.
    pub poll_interval: Duration,
    /// Upper bound of the `eth_getLogs` span.
    pub max_block_range: u64,
    /// Request-rate budget of the chain.
    pub requests_per_second: f64,
    /// Blocks of hashes kept for reorg detection.
    pub reorg_window: u64,
    /// Configured contracts: address, role, start block.
    pub contracts: Vec<(Address, String, u64)>,
    /// RPC attempts per call before the listener gives up and restarts.
    pub rpc_attempts: usize,
}

/// Unix time now, in seconds.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Backfill throughput, for the progress line.
#[derive(Debug)]
struct Progress {
    started: Instant,
    blocks: u64,
    events: u64,
    last_log: Instant,
}

impl Progress {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            blocks: 0,
            events: 0,
            last_log: Instant::now() - Duration::from_secs(60),
        }
    }

    fn record(&mut self, chain: &str, from: u64, to: u64, events: usize, remaining: u64) {
        self.blocks += to - from + 1;
        self.events += events as u64;
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let blocks_per_s = self.blocks as f64 / elapsed;
        let events_per_s = self.events as f64 / elapsed;
        let eta = if blocks_per_s > 0.0 {
            Duration::from_secs_f64(remaining as f64 / blocks_per_s)
        } else {
            Duration::ZERO
        };
        // One line per step, but at most one a second: a fast backfill would flood the log.
        if self.last_log.elapsed() >= Duration::from_secs(1) || remaining == 0 {
            self.last_log = Instant::now();
            tracing::info!(
                chain,
                from,
                to,
                events,
                remaining_blocks = remaining,
                blocks_per_s = format!("{blocks_per_s:.0}"),
                events_per_s = format!("{events_per_s:.0}"),
                eta = %humanize(eta),
                "backfill step"
            );
        }
    }
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepOutcome {
    /// Something was committed: go again at once.
    Progressed,
    /// Nothing new: wait for the next head.
    Idle,
    /// The fork is older than the window: stop indexing this chain.
    Halted,
}

/// The listener's logic, owned by the task the actor spawns; rebuilt from the database on every
/// (re)start, so a restart resumes exactly from the persisted cursors and window.
struct ListenerCore {
    settings: Arc<EvmListenerSettings>,
    rpc: Arc<EvmRpc>,
    pool: PgPool,
    sink: Recipient<ApplyChainEvent>,
    window: ReorgWindow,
    cursors: Vec<ContractCursor>,
    range: BlockRange,
    progress: Progress,
    /// The last head number seen and when it was first seen (for the head-age gauge).
    head_seen: (u64, Instant),
    /// The next catch-up range, requested while the previous one was being committed.
    prefetch: Option<Prefetch>,
    /// Whether the window's tip is known to be canonical: true right after a catch-up step
    /// fetched it; false after a (re)start or live steps, when it must be checked again before
    /// the window is left behind.
    tip_verified: bool,
}

/// A catch-up range requested ahead: its logs and the header of its last block.
struct Prefetch {
    addresses: Vec<Address>,
    from: u64,
    to: u64,
    answer: tokio::task::JoinHandle<Result<(LogsAnswer, Header)>>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // A prefetch nobody will read (the listener restarts, or the range changed) stops.
        self.answer.abort();
    }
}

/// `eth_getLogs` for `addresses` over `[from, to]` as one request (no range adaptation).
async fn request_logs(
    rpc: &EvmRpc,
    addresses: Vec<Address>,
    from: u64,
    to: u64,
) -> Result<LogsAnswer> {
    if addresses.is_empty() {
        // An empty address list would ask for every log of the chain.
        return Ok(LogsAnswer::Logs(Vec::new()));
    }
    let filter = Filter::new()
        .address(addresses)
        .from_block(from)
        .to_block(to);
    rpc.logs(&filter).await
}

impl ListenerCore {
    async fn load(
        settings: Arc<EvmListenerSettings>,
        pool: PgPool,
        sink: Recipient<ApplyChainEvent>,
    ) -> Result<Self> {
        let rpc = Arc::new(
            EvmRpc::new(
                &settings.chain,
                settings.endpoints.clone(),
                settings.requests_per_second,
            )
            .with_max_attempts(settings.rpc_attempts),
        );
        let mut conn = pool.acquire().await.map_err(Error::db("load_listener"))?;
        let blocks = store::load_window(&mut conn, &settings.chain, settings.reorg_window).await?;
        let cursors = store::load_cursors(&mut conn, &settings.chain).await?;
        let range = BlockRange::new(settings.max_block_range);
        METRICS
            .getlogs_block_range_blocks
            .with_label_values(&[&settings.chain])
            .set(gauge(range.span()));
        Ok(Self {
            window: ReorgWindow::from_blocks(settings.reorg_window, blocks),
            settings,
            rpc,
            pool,
            sink,
            cursors,
            range,
            progress: Progress::new(),
            head_seen: (0, Instant::now()),
            prefetch: None,
            tip_verified: false,
        })
    }

    fn chain(&self) -> &str {
        &self.settings.chain
    }

    async fn send(&self, event: ChainEvent) -> Result<Checkpoint> {
        METRICS
            .actor_mailbox_messages
            .with_label_values(&["reconciler"])
            .inc();
        self.sink
            .send(ApplyChainEvent(event))
            .timeout(ACK_TIMEOUT)
            .await
            .map_err(|err| Error::Mailbox {
                actor: "reconciler",
                message: err.to_string(),
            })?
    }

    /// Where the front stands: the block after the window's tip, or, before the first window
    /// block exists, the lowest next block of all contracts. `None` when there is no contract.
    fn front(&self) -> Option<u64> {
        match self.window.tip() {
            Some(tip) => Some(tip.number + 1),
            None => self.cursors.iter().map(ContractCursor::next_block).min(),
        }
    }

    /// The front group for a batch ending at `to`: contracts at or beyond the front whose start
    /// has come (`query`: their logs are fetched) — every one of them moves its cursor to `to`.
    /// Contracts starting later stay where they are until the front reaches them.
    fn front_group(&self, front: u64, to: u64) -> Vec<Address> {
        self.cursors
            .iter()
            .filter(|c| c.next_block() >= front && c.next_block() <= to + 1)
            .map(|c| c.address)
            .collect()
    }

    async fn step(&mut self) -> Result<StepOutcome> {
        let head = self.rpc.latest().await?;
        METRICS
            .chain_head_block
            .with_label_values(&[self.chain()])
            .set(gauge(head.block.number));
        if self.head_seen.0 != head.block.number {
            self.head_seen = (head.block.number, Instant::now());
        }
        METRICS
            .chain_head_age_seconds
            .with_label_values(&[self.chain()])
            .set(self.head_seen.1.elapsed().as_secs_f64());
        if let Some(tip) = self.window.tip().copied() {
            if head.block.number == tip.number && head.block.hash != tip.hash {
                // Same height, another hash: the branch we hold was replaced.
                return self.handle_reorg(head.block.number).await;
            }
            if head.block.number < tip.number {
                // A node behind what we indexed is lagging, not reorging: wait for it.
                tracing::debug!(
                    chain = self.chain(),
                    head = head.block.number,
                    indexed = tip.number,
                    "node head is below the indexed block; waiting"
                );
                return Ok(StepOutcome::Idle);
            }
        }
        let Some(front) = self.front() else {
            return Ok(StepOutcome::Idle);
        };
        let mut outcome = self.front_step(front, &head).await?;
        if outcome != StepOutcome::Halted {
            // Contracts behind the front backfill one range per step, so the front stays live.
            if self.lagging_step(head.block.number).await? == StepOutcome::Progressed {
                outcome = StepOutcome::Progressed;
            }
        }
        let remaining = self.front().map_or(0, |f| {
            head.block
                .number
                .saturating_sub(self.settings.reorg_window)
                .saturating_sub(f.saturating_sub(1))
        });
        METRICS
            .backfill_remaining_blocks
            .with_label_values(&[self.chain()])
            .set(gauge(remaining));
        Ok(outcome)
    }

    fn group_at(&self, next_block: u64) -> Vec<Address> {
        self.cursors
            .iter()
            .filter(|c| c.next_block() == next_block)
            .map(|c| c.address)
            .collect()
    }

    /// Moves the front group one step: a range while deeper than the window, else live blocks.
    async fn front_step(&mut self, front: u64, head: &Header) -> Result<StepOutcome> {
        let safe = head.block.number.saturating_sub(self.settings.reorg_window);
        if front <= safe {
            return self.catch_up_step(front, safe, head.block.number).await;
        }
        if front > head.block.number {
            return Ok(StepOutcome::Idle);
        }
        self.live_step(front, head).await
    }

    /// A range of blocks deeper than the reorg window, for the front group. The next range is
    /// requested before this one is committed, so fetching and writing overlap.
    async fn catch_up_step(&mut self, from: u64, safe: u64, head: u64) -> Result<StepOutcome> {
        // Before leaving the window behind, make sure its tip is still canonical: a reorg that
        // happened while chainsync was stopped (or while it followed the head) is found here.
        if !self.tip_verified {
            if let Some(tip) = self.window.tip().copied() {
                let canonical = self.rpc.header_at(tip.number).await?;
                if canonical.block.hash != tip.hash {
                    return self.handle_reorg(head).await;
                }
            }
            self.tip_verified = true;
        }
        let to = (from + self.range.span() - 1).min(safe);
        let mut group = self.front_group(from, to);
        group.sort_unstable();
        let (answer, anchor) = match self.prefetch.take() {
            Some(mut ahead) if ahead.addresses == group && ahead.from == from && ahead.to == to => {
                (&mut ahead.answer).await.map_err(|err| Error::Task {
                    chain: self.chain().to_owned(),
                    message: err.to_string(),
                })??
            }
            _ => futures::try_join!(
                request_logs(&self.rpc, group.clone(), from, to),
                self.rpc.header_at(to)
            )?,
        };
        let Some(logs) = self.absorb(answer, from, to)? else {
            return Ok(StepOutcome::Progressed);
        };
        // Deeper than the window: every block is taken as final.
        let Some((logs, discovered)) = self.prepare_logs(logs, |_, _| true)? else {
            return Ok(StepOutcome::Idle);
        };
        let events = logs.len();
        // The in-memory state moves first so the next range can be requested now; if the commit
        // fails, the listener restarts and reloads its state from the database anyway.
        self.window.reset(anchor.block);
        self.advance(&group, to, &discovered);
        self.request_ahead(to + 1, safe);
        self.send(ChainEvent::Committed {
            blocks: vec![anchor.block],
            logs,
            cursor: CursorAdvance {
                contracts: group,
                to_block: to,
            },
            discovered,
            head,
            reset_window: true,
        })
        .await?;
        let chain = self.settings.chain.clone();
        self.progress
            .record(&chain, from, to, events, safe.saturating_sub(to));
        Ok(StepOutcome::Progressed)
    }

    /// Requests the catch-up range starting at `from` in the background, if there is one.
    fn request_ahead(&mut self, from: u64, safe: u64) {
        if from > safe {
            return;
        }
        let to = (from + self.range.span() - 1).min(safe);
        let mut addresses = self.front_group(from, to);
        addresses.sort_unstable();
        let rpc = self.rpc.clone();
        let request = addresses.clone();
        let answer = actix::spawn(async move {
            futures::try_join!(request_logs(&rpc, request, from, to), rpc.header_at(to))
        });
        self.prefetch = Some(Prefetch {
            addresses,
            from,
            to,
            answer,
        });
    }

    /// New blocks near the head, header by header.
    async fn live_step(&mut self, from: u64, head: &Header) -> Result<StepOutcome> {
        // The batch also honours the adaptive range: its logs are fetched in one `eth_getLogs`,
        // and a provider that refused a span must not be asked for the same span again.
        let batch = LIVE_BATCH_BLOCKS.min(self.range.span());
        let to = head.block.number.min(from + batch - 1);
        let headers: Vec<Header> = if from == to && head.block.number == to {
            vec![*head]
        } else {
            try_join_all((from..=to).map(|n| self.rpc.header_at(n))).await?
        };
        let mut accepted: Vec<Header> = Vec::with_capacity(headers.len());
        let mut tentative = self.window.clone();
        for header in headers {
            match tentative.check(&header.block) {
                WindowCheck::Extends => {
                    tentative.push(header.block);
                    accepted.push(header);
                }
                WindowCheck::Conflicts if accepted.is_empty() => {
                    return self.handle_reorg(head.block.number).await;
                }
                // The node moved between two header calls: commit what links up, look again.
                _ => break,
            }
        }
        let Some(last) = accepted.last().map(|h| h.block.number) else {
            return Ok(StepOutcome::Idle);
        };
        let group = self.front_group(from, last);
        let watched: Vec<BloomInput<'_>> = group
            .iter()
            .map(|a| BloomInput::Raw(a.as_slice()))
            .collect();
        let needing_logs: Vec<&Header> = accepted
            .iter()
            .filter(|h| {
                watched
                    .iter()
                    .any(|input| h.logs_bloom.contains_input(*input))
            })
            .collect();
        let mut logs = Vec::new();
        if let (Some(first), Some(last_needed)) = (needing_logs.first(), needing_logs.last()) {
            let (first, last_needed) = (first.block.number, last_needed.block.number);
            match self.fetch_range(&group, first, last_needed).await? {
                Some(fetched) => logs = fetched,
                // The provider refused this span: take it up again next step, smaller.
                None => return Ok(StepOutcome::Progressed),
            }
        }
        let hashes: HashMap<u64, B256> = accepted
            .iter()
            .map(|h| (h.block.number, h.block.hash))
            .collect();
        let on_branch = |number: u64, hash: &B256| hashes.get(&number) == Some(hash);
        let Some((logs, discovered)) = self.prepare_logs(logs, on_branch)? else {
            // A log from a block we do not hold: the chain moved under us. Look again.
            return Ok(StepOutcome::Idle);
        };
        let blocks: Vec<BlockRef> = accepted.iter().map(|h| h.block).collect();
        self.send(ChainEvent::Committed {
            blocks,
            logs,
            cursor: CursorAdvance {
                contracts: group.clone(),
                to_block: last,
            },
            discovered: discovered.clone(),
            head: head.block.number,
            reset_window: false,
        })
        .await?;
        self.window = tentative;
        self.tip_verified = false;
        self.advance(&group, last, &discovered);
        Ok(StepOutcome::Progressed)
    }

    /// One range for the contracts furthest behind the front, up to the front.
    async fn lagging_step(&mut self, head: u64) -> Result<StepOutcome> {
        let Some(front) = self.front() else {
            return Ok(StepOutcome::Idle);
        };
        let Some(from) = self
            .cursors
            .iter()
            .map(ContractCursor::next_block)
            .filter(|next| *next < front)
            .min()
        else {
            return Ok(StepOutcome::Idle);
        };
        let group = self.group_at(from);
        let next_other = self.next_cursor_above(from).min(front);
        let to = (from + self.range.span() - 1).min(next_other - 1);
        let Some(logs) = self.fetch_range(&group, from, to).await? else {
            return Ok(StepOutcome::Progressed);
        };
        // Logs inside the window must sit on the branch the window holds.
        let on_branch = |number: u64, hash: &B256| self.window.accepts(number, hash);
        let Some((logs, discovered)) = self.prepare_logs(logs, on_branch)? else {
            return Ok(StepOutcome::Idle);
        };
        let events = logs.len();
        self.send(ChainEvent::Committed {
            blocks: Vec::new(),
            logs,
            cursor: CursorAdvance {
                contracts: group.clone(),
                to_block: to,
            },
            discovered: discovered.clone(),
            head,
            reset_window: false,
        })
        .await?;
        self.advance(&group, to, &discovered);
        let chain = self.settings.chain.clone();
        self.progress
            .record(&chain, from, to, events, front.saturating_sub(to + 1));
        Ok(StepOutcome::Progressed)
    }

    fn next_cursor_above(&self, from: u64) -> u64 {
        self.cursors
            .iter()
            .map(ContractCursor::next_block)
            .filter(|next| *next > from)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// `eth_getLogs` for `addresses` over `[from, to]`, shrinking the range as the provider asks.
    /// Returns the logs of the whole range, or `None` when the provider refused it and the span
    /// shrank: the caller goes again with the smaller span.
    async fn fetch_range(
        &mut self,
        addresses: &[Address],
        from: u64,
        to: u64,
    ) -> Result<Option<Vec<Log>>> {
        let answer = request_logs(&self.rpc, addresses.to_vec(), from, to).await?;
        self.absorb(answer, from, to)
    }

    /// Applies an `eth_getLogs` answer for `[from, to]` to the adaptive range: the logs on
    /// success, `None` when the provider refused the span (which then shrinks).
    fn absorb(&mut self, answer: LogsAnswer, from: u64, to: u64) -> Result<Option<Vec<Log>>> {
        let span = to - from + 1;
        match answer {
            LogsAnswer::Logs(logs) => {
                if self.range.succeeded(logs.len()) {
                    METRICS
                        .getlogs_range_reductions_total
                        .with_label_values(&[self.chain(), "dense_blocks"])
                        .inc();
                }
                METRICS
                    .getlogs_block_range_blocks
                    .with_label_values(&[self.chain()])
                    .set(gauge(self.range.span()));
                Ok(Some(logs))
            }
            LogsAnswer::RangeRefused(advice) => {
                if let Some(reason) = self.range.refused(advice, span) {
                    METRICS
                        .getlogs_range_reductions_total
                        .with_label_values(&[self.chain(), reason])
                        .inc();
                }
                METRICS
                    .getlogs_block_range_blocks
                    .with_label_values(&[self.chain()])
                    .set(gauge(self.range.span()));
                tracing::info!(
                    chain = self.chain(),
                    from,
                    to,
                    new_span = self.range.span(),
                    "provider refused the eth_getLogs range; shrinking"
                );
                if span == 1 {
                    return Err(Error::Inconsistent {
                        chain: self.chain().to_owned(),
                        block: from,
                        message: "the provider refuses eth_getLogs even for a single block"
                            .to_owned(),
                    });
                }
                Ok(None)
            }
        }
    }

    /// Turns RPC logs into raw logs (dropping logs of contracts that start later) and collects
    /// discovered producer clones. `None` when a log's block is not on the branch the listener
    /// holds (`on_branch(number, hash)` is false): the chain moved, and the caller looks again.
    fn prepare_logs(
        &self,
        logs: Vec<Log>,
        on_branch: impl Fn(u64, &B256) -> bool,
    ) -> Result<Option<(Vec<RawLog>, Vec<DiscoveredContract>)>> {
        let starts: HashMap<Address, u64> = self
            .cursors
            .iter()
            .map(|c| (c.address, c.next_block()))
            .collect();
        let mut raw_logs = Vec::with_capacity(logs.len());
        let mut discovered = Vec::new();
        for log in logs {
            if log.removed {
                continue;
            }
            let Some(raw) = raw_log(&log) else {
                return Err(Error::Inconsistent {
                    chain: self.chain().to_owned(),
                    block: log.block_number.unwrap_or(0),
                    message: "log without block hash, number, transaction hash or index".to_owned(),
                });
            };
            if !on_branch(raw.block_number, &raw.block_hash) {
                return Ok(None);
            }
            if starts
                .get(&raw.address)
                .is_some_and(|start| raw.block_number < *start)
            {
                continue;
            }
            if let DecodeOutcome::Decoded(event) = &raw.decoded {
                if event.name == "LogProducer" {
                    if let Some(clone) = event.fields["cloneAddress"]
                        .as_str()
                        .and_then(|s| s.parse::<Address>().ok())
                    {
                        if !starts.contains_key(&clone) {
                            discovered.push(DiscoveredContract {
                                address: clone,
                                from_block: raw.block_number,
                                tx_hash: raw.tx_hash,
                            });
                        }
                    }
                }
            }
            raw_logs.push(raw);
        }
        raw_logs.sort_by_key(|l| (l.block_number, l.log_index));
        Ok(Some((raw_logs, discovered)))
    }

    fn advance(&mut self, group: &[Address], to: u64, discovered: &[DiscoveredContract]) {
        for cursor in &mut self.cursors {
            if group.contains(&cursor.address) {
                cursor.indexed_to = Some(to);
            }
        }
        for contract in discovered {
            if !self.cursors.iter().any(|c| c.address == contract.address) {
                self.cursors.push(ContractCursor {
                    address: contract.address,
                    role: "producer".to_owned(),
                    start_block: contract.from_block,
                    indexed_to: None,
                });
            }
        }
    }

    /// Finds where our branch and the node's meet and tells the reconciler, or halts when the
    /// fork is older than the window.
    async fn handle_reorg(&mut self, head: u64) -> Result<StepOutcome> {
        let mut canonical: HashMap<u64, B256> = HashMap::new();
        let (fork_point, orphaned) = loop {
            match self.window.find_fork_point(|n| canonical.get(&n).copied()) {
                ForkSearch::Found {
                    fork_point,
                    orphaned,
                } => break (fork_point, orphaned),
                ForkSearch::NeedMore { next } => {
                    // Fetch a few at once: most reorgs are shallow, but not all.
                    let low = next.saturating_sub(7);
                    let headers = try_join_all((low..=next).map(|n| self.rpc.header_at(n))).await?;
                    for h in headers {
                        canonical.insert(h.block.number, h.block.hash);
                    }
                }
                ForkSearch::BeyondWindow { window_start } => {
                    return self.halt(window_start).await;
                }
            }
        };
        let depth = orphaned.len();
        tracing::warn!(
            chain = self.chain(),
            fork_point,
            depth,
            head,
            "reorg detected"
        );
        self.send(ChainEvent::Reorged {
            fork_point,
            orphaned,
            head,
        })
        .await?;
        self.window.rewind_to(fork_point);
        self.tip_verified = false;
        self.prefetch = None;
        for cursor in &mut self.cursors {
            if cursor.indexed_to.is_some_and(|to| to > fork_point) {
                cursor.indexed_to = Some(fork_point.max(cursor.start_block.saturating_sub(1)));
            }
        }
        Ok(StepOutcome::Progressed)
    }

    async fn halt(&mut self, window_start: u64) -> Result<StepOutcome> {
        let err = Error::ForkBeyondWindow {
            chain: self.chain().to_owned(),
            window_start,
        };
        tracing::error!(chain = self.chain(), window_start, error = %err, "CRITICAL: indexing halted");
        METRICS
            .chain_halted
            .with_label_values(&[self.chain()])
            .set(1);
        sqlx::query(
            "UPDATE chain_status SET halted_reason = $2, updated_at = now() WHERE chain = $1",
        )
        .bind(self.chain())
        .bind(err.to_string())
        .execute(&self.pool)
        .await
        .map_err(Error::db("halt"))?;
        Ok(StepOutcome::Halted)
    }

    async fn run(mut self, wake: Arc<Notify>, restarts: Arc<AtomicU32>) -> Result<()> {
        tracing::info!(chain = self.chain(), endpoint = %self.rpc.current_endpoint(),
            contracts = self.cursors.len(), window = self.window.len(), "listener started");
        loop {
            let outcome = self.step().await?;
            // A completed step resets the restart backoff.
            restarts.store(0, Ordering::Relaxed);
            METRICS
                .listener_progress_timestamp_seconds
                .with_label_values(&[self.chain()])
                .set(unix_now());
            match outcome {
                StepOutcome::Progressed => {}
                StepOutcome::Idle => {
                    let _ =
                        tokio::time::timeout(self.settings.poll_interval, wake.notified()).await;
                }
                StepOutcome::Halted => loop {
                    // Stay alive for /readyz and metrics; an operator rewinds and restarts.
                    tokio::time::sleep(self.settings.poll_interval.max(Duration::from_secs(5)))
                        .await;
                    METRICS
                        .listener_progress_timestamp_seconds
                        .with_label_values(&[self.chain()])
                        .set(unix_now());
                },
            }
        }
    }
}

/// Converts an RPC log into a [`RawLog`], decoding it; `None` when the node left out its
/// position (block hash or number, transaction hash, log index), as it does for pending logs.
pub fn raw_log(log: &Log) -> Option<RawLog> {
    Some(RawLog {
        block_hash: log.block_hash?,
        block_number: log.block_number?,
        block_timestamp: log.block_timestamp,
        tx_hash: log.transaction_hash?,
        tx_index: log.transaction_index.unwrap_or(0),
        log_index: log.log_index?,
        address: log.inner.address,
        topics: log.inner.data.topics().to_vec(),
        data: log.inner.data.data.to_vec(),
        decoded: decode_log(&log.inner),
    })
}

/// Follows `newHeads` over WebSocket and wakes the listener on each; reconnects by itself with
/// backoff. While the socket is down the listener simply polls.
async fn follow_heads(chain: String, endpoint: Endpoint, wake: Arc<Notify>) {
    use alloy::providers::{Provider, ProviderBuilder, WsConnect};
    use futures::StreamExt;
    let mut delay = Duration::from_secs(1);
    loop {
        let connected = ProviderBuilder::new()
            .connect_ws(WsConnect::new(endpoint.url.as_str()))
            .await;
        match connected {
            Ok(provider) => match provider.subscribe_blocks().await {
                Ok(subscription) => {
                    tracing::info!(chain = %chain, endpoint = %endpoint.redacted, "subscribed to new heads");
                    delay = Duration::from_secs(1);
                    let mut stream = subscription.into_stream();
                    while stream.next().await.is_some() {
                        wake.notify_one();
                    }
                    tracing::warn!(chain = %chain, "head subscription ended; polling until it is back");
                }
                Err(_) => {
                    tracing::warn!(chain = %chain, endpoint = %endpoint.redacted, "head subscription refused; polling");
                }
            },
            Err(_) => {
                tracing::warn!(chain = %chain, endpoint = %endpoint.redacted, retry_in = ?delay,
                    "websocket connection failed; polling until it is back");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

/// The EVM listener actor of one chain: a supervised shell around [`ListenerCore`]. When the
/// core fails (after its own retries), the actor stops and its supervisor restarts it, with a
/// growing delay, from the persisted cursors.
pub struct EvmListener {
    settings: Arc<EvmListenerSettings>,
    pool: PgPool,
    sink: Recipient<ApplyChainEvent>,
    restarts: Arc<AtomicU32>,
    wake: Arc<Notify>,
    ws_task: Option<SpawnHandle>,
}

impl EvmListener {
    /// A listener for `settings`, reading its state from `pool` and sending to `sink`.
    pub fn new(
        settings: EvmListenerSettings,
        pool: PgPool,
        sink: Recipient<ApplyChainEvent>,
    ) -> Self {
        Self {
            settings: Arc::new(settings),
            pool,
            sink,
            restarts: Arc::new(AtomicU32::new(0)),
            wake: Arc::new(Notify::new()),
            ws_task: None,
        }
    }
}

impl Actor for EvmListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.ws_task.is_none() {
            if let Some(endpoint) = self.settings.ws_endpoint.clone() {
                let fut = follow_heads(self.settings.chain.clone(), endpoint, self.wake.clone());
                self.ws_task = Some(ctx.spawn(fut.into_actor(self)));
            }
        }
        let restarts = self.restarts.load(Ordering::Relaxed);
        let delay = if restarts == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(1u64 << restarts.min(6)).min(MAX_RESTART_DELAY)
        };
        let settings = self.settings.clone();
        let pool = self.pool.clone();
        let sink = self.sink.clone();
        let wake = self.wake.clone();
        let restarts = self.restarts.clone();
        let work = async move {
            tokio::time::sleep(delay).await;
            let core = ListenerCore::load(settings, pool, sink).await?;
            core.run(wake, restarts).await
        };
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            if let Err(err) = result {
                tracing::error!(chain = %act.settings.chain, error = %err, kind = err.kind(),
                    "listener failed; restarting from the persisted cursor");
                ctx.stop();
            }
        }));
    }
}

impl Supervised for EvmListener {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        self.ws_task = None;
        METRICS
            .actor_restarts_total
            .with_label_values(&["evm_listener"])
            .inc();
    }
}
