//! `make bench-evm`: backfill devnet events from anvil into PostgreSQL and compare with the bare
//! cost of the two halves measured in the same run — fetching the same logs with `eth_getLogs`
//! alone, and inserting the same rows alone — so the result reads as a fraction of what the node
//! and the database allow. Also reports chainsync's peak RSS.
//!
//! `BENCH_EVENTS` (default 100000) sets how many events the devnet generates.
#![allow(missing_docs, unreachable_pub)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::Filter;
use chainsync::devnet::{deploy, Traffic};
use chainsync_actors::chain::{CursorAdvance, RawLog};
use chainsync_actors::listener::evm::raw_log;
use chainsync_actors::writer::store;
use common::{indexed_block, write_config, Anvil, Chainsync, TestDb};

const RANGE: u64 = 500;
/// The reorg window of the benchmark's configuration (the test default).
const REORG_WINDOW: u64 = 64;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // A zero base fee stays near zero however full the flood's blocks get.
    let anvil = Anvil::start_with(&["--block-base-fee-per-gas", "0"]).await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 1)
        .await
        .expect("traffic");
    let generated_at = Instant::now();
    traffic.flood(events).await.expect("flood");
    // History, as a backfill meets it: the event blocks lie deeper than the reorg window.
    anvil.mine(REORG_WINDOW + 1).await;
    let head = anvil.block_number().await;
    println!(
        "generated {events}+ events in {:?}; head {head}",
        generated_at.elapsed()
    );

    let mut addresses: Vec<Address> = vec![deployment.manager, deployment.producer_storage];
    addresses.extend(deployment.producers.iter().copied());
    addresses.extend(traffic.producer_clones());
    addresses.sort();
    addresses.dedup();

    // 1. Bare fetch: the same ranges with eth_getLogs, nothing else.
    let provider: RootProvider = RootProvider::new_http(anvil.rpc_url().parse().expect("url"));
    let fetch_started = Instant::now();
    let mut logs = Vec::new();
    let mut from = 0;
    while from <= head {
        let to = head.min(from + RANGE - 1);
        let filter = Filter::new()
            .address(addresses.clone())
            .from_block(from)
            .to_block(to);
        logs.extend(provider.get_logs(&filter).await.expect("eth_getLogs"));
        from = to + 1;
    }
    let fetch = fetch_started.elapsed();
    let count = logs.len();

    // 2. Bare insert: the same rows through the same repository code, batch per range.
    let bare_db = TestDb::new().await;
    let bare_pool = bare_db.pool().await;
    sqlx::query("INSERT INTO chains (name, kind, chain_id, genesis_hash) VALUES ('devnet', 'evm', 31337, $1)")
        .bind(B256::ZERO.as_slice())
        .execute(&bare_pool)
        .await
        .expect("chain row");
    sqlx::query("INSERT INTO chain_status (chain) VALUES ('devnet')")
        .execute(&bare_pool)
        .await
        .expect("status row");
    let raw: Vec<RawLog> = logs.iter().filter_map(raw_log).collect();
    let insert_started = Instant::now();
    let mut start = 0;
    while start < raw.len() {
        let first_block = raw[start].block_number;
        let mut end = start;
        while end < raw.len() && raw[end].block_number < first_block / RANGE * RANGE + RANGE {
            end += 1;
        }
        let mut tx = bare_pool.begin().await.expect("begin");
        store::commit_blocks(
            &mut tx,
            "devnet",
            &[],
            &raw[start..end],
            &CursorAdvance {
                contracts: addresses.clone(),
                to_block: raw[end - 1].block_number,
            },
            &[],
            head,
            false,
        )
        .await
        .expect("insert");
        tx.commit().await.expect("commit");
        start = end;
    }
    let insert = insert_started.elapsed();

    // 3. chainsync itself, as a separate process.
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let contracts = vec![
        (
            "stream_lock_manager",
            format!("{:#x}", deployment.manager),
            0,
        ),
        (
            "producer_storage",
            format!("{:#x}", deployment.producer_storage),
            0,
        ),
    ];
    let config = write_config(dir.path(), &anvil.rpc_url(), &db.url, &contracts, "");
    let started = Instant::now();
    let chainsync = Chainsync::run(&config);
    loop {
        if indexed_block(&pool, "devnet")
            .await
            .is_some_and(|b| b >= head)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let indexing = started.elapsed();
    let rss = common::peak_rss_kib(chainsync.pid());
    let page = reqwest::get(common::metrics_url(&config))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics page");
    let metric = |name: &str, labels: &str| -> f64 {
        page.lines()
            .filter(|line| line.starts_with(name) && line.contains(labels))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let transfers: i64 = sqlx::query_scalar("SELECT count(*) FROM transfers")
        .fetch_one(&pool)
        .await
        .expect("count");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM evm_logs WHERE NOT removed")
        .fetch_one(&pool)
        .await
        .expect("count");

    let slower = fetch.max(insert);
    println!("events: {count} (stored {stored}), blocks: {head}");
    println!(
        "bare eth_getLogs: {fetch:?} ({:.0} events/s)",
        count as f64 / fetch.as_secs_f64()
    );
    println!(
        "bare insert:      {insert:?} ({:.0} events/s)",
        count as f64 / insert.as_secs_f64()
    );
    println!(
        "chainsync:        {indexing:?} ({:.0} events/s, {:.0} blocks/s), peak RSS {} MiB",
        count as f64 / indexing.as_secs_f64(),
        head as f64 / indexing.as_secs_f64(),
        rss / 1024
    );
    println!(
        "  where the time went: write transactions {:.2} s ({} of them), eth_getLogs {:.2} s, \
         getTokenLock eth_call {:.2} s ({} calls), {transfers} transfers recorded",
        metric(
            "chainsync_db_transaction_duration_seconds_sum",
            "op=\"commit_batch\""
        ),
        metric(
            "chainsync_db_transaction_duration_seconds_count",
            "op=\"commit_batch\""
        ),
        metric(
            "chainsync_rpc_request_duration_seconds_sum",
            "method=\"eth_getLogs\""
        ),
        metric(
            "chainsync_rpc_request_duration_seconds_sum",
            "method=\"eth_call\""
        ),
        metric(
            "chainsync_rpc_request_duration_seconds_count",
            "method=\"eth_call\""
        ),
    );
    println!(
        "chainsync reaches {:.0} % of the slower half alone ({:.0} % of fetch + insert in sequence)",
        100.0 * slower.as_secs_f64() / indexing.as_secs_f64(),
        100.0 * (fetch + insert).as_secs_f64() / indexing.as_secs_f64()
    );
}
