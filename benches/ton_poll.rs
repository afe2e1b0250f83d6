//! `make bench-ton`: the cost of the TON listener's polling as the number of watched accounts
//! grows. The loopback liteserver releases the `@ton/sandbox` scenarios at a steady rate; chainsync
//! watches the 200 deposit accounts of `many_deposits` (the baseline), then the same 200 plus
//! valid accounts that never existed, up to 10,000. Each run reports, over the same window of
//! masterchain blocks (from the first block after chainsync's first committed poll until every
//! many_deposits row is in and the head is 2 past its last release): chainsync's and the
//! liteserver's CPU seconds per block (/proc utime + stime), liteserver requests per block by
//! method (`chainsync_rpc_requests_total`), the time from a transaction landing (the instant the
//! liteserver's head reaches its release block) to its row, the time from a head change to the
//! poll write that reached it (`chain_status.head_seen_at`), and chainsync's peak RSS (VmHWM).
//! Figures only: nothing about speed is asserted, but a run whose deposits never all arrive fails
//! before printing any figure.
//!
//! Row time is `ton_transactions.inserted_at`, which is `now()` of the writing database
//! transaction, i.e. when the write began (a few ms before the commit); "seen by a reader" is when
//! this benchmark, querying every 50 ms, first saw the row. Counters and CPU are sampled 15 % of a
//! block interval before each block boundary, when chainsync is idle if its polls keep up.
//!
//! Environment: `BENCH_TON_ACCOUNTS` (default `200,10000`; the first is the baseline),
//! `BENCH_TON_BLOCK_INTERVAL_MS` (1000), `BENCH_TON_STEPS_PER_BLOCK` (2),
//! `BENCH_TON_POLL_INTERVAL_MS` (200), `BENCH_TON_LEAD_MS` (time from the liteserver's start to
//! masterchain block 2, for chainsync's start-up and first poll; default 3 s + 0.5 ms per account),
//! `BENCH_TON_TIMEOUT_S` (how long after the last release the rows may take; 180),
//! `BENCH_TON_DEBUG` (set: print per-block figures to stderr).
#![allow(missing_docs, unreachable_pub)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use common::ton::{now_unix_ms, scenario, write_ton_config, Account, Liteserver};
use common::{metrics_url, Chainsync, TestDb};
use everscale_types::cell::CellBuilder;
use sqlx::PgPool;

const CHAIN: &str = "ton-test";
const METHODS: &[&str] = &[
    "get_masterchain_info",
    "get_account_state",
    "get_transactions",
    "run_smc_method",
];
/// How often the benchmark looks at the database (visibility of rows, indexed head).
const WATCH_EVERY: Duration = Duration::from_millis(50);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Settings shared by every run.
struct Settings {
    interval_ms: u64,
    steps_per_block: u64,
    poll_ms: u64,
    timeout: Duration,
    clk_tck: f64,
    clk_tck_assumed: bool,
}

/// What the liteserver releases of `many_deposits` for its 200 deposit accounts.
struct Scenario {
    /// The deposit accounts, in label order.
    accounts: Vec<String>,
    /// Transaction hash (hex) → masterchain seqno from which the liteserver serves it.
    release: HashMap<String, u64>,
    first_release: u64,
    last_release: u64,
}

/// Step positions as the liteserver counts them: every sandbox file, sorted by name, step k
/// overall released at seqno 2 + k / steps_per_block.
fn many_deposits(steps_per_block: u64) -> Scenario {
    let dir = common::repo_root().join("tests/fixtures/ton/sandbox");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("sandbox fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut offset = 0u64;
    for path in &files {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let file = scenario(name);
        let steps = file["steps"].as_array().expect("steps");
        if name != "many_deposits" {
            offset += steps.len() as u64;
            continue;
        }
        let accounts: Vec<String> = file["accounts"]
            .as_object()
            .expect("accounts")
            .iter()
            .filter(|(label, _)| label.starts_with("deposit_"))
            .map(|(_, a)| a.as_str().expect("address").to_owned())
            .collect();
        let watched: HashSet<&str> = accounts.iter().map(String::as_str).collect();
        let mut release = HashMap::new();
        for (j, step) in steps.iter().enumerate() {
            let seqno = 2 + (offset + j as u64) / steps_per_block;
            for tx in step["transactions"].as_array().expect("transactions") {
                if watched.contains(tx["account"].as_str().expect("account")) {
                    let hash = tx["hash"].as_str().expect("hash").to_lowercase();
                    release.insert(hash, seqno);
                }
            }
        }
        let first_release = release.values().copied().min().expect("transactions");
        let last_release = release.values().copied().max().expect("transactions");
        return Scenario {
            accounts,
            release,
            first_release,
            last_release,
        };
    }
    panic!("no many_deposits scenario in {}", dir.display());
}

/// `count` valid raw addresses of accounts that never existed: the SHA-256 representation hash of
/// a cell holding the index, in workchain 0.
fn phantom_accounts(count: usize, real: &[String]) -> Vec<String> {
    let taken: HashSet<&str> = real.iter().map(String::as_str).collect();
    let mut out = Vec::with_capacity(count);
    let mut index = 0u64;
    while out.len() < count {
        let mut builder = CellBuilder::new();
        builder.store_u64(index).expect("store index");
        let cell = builder.build().expect("cell");
        let address = format!("0:{}", hex::encode(cell.repr_hash().0));
        if !taken.contains(address.as_str()) {
            out.push(address);
        }
        index += 1;
    }
    out
}

/// utime + stime of a process, in clock ticks (all threads).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces: state is
    // field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// `getconf CLK_TCK`, or 100 (the Linux default) when it cannot be read.
fn clock_ticks() -> (f64, bool) {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .map_or((100.0, true), |v| (v, false))
}

/// The PID of the liteserver listening on `port` (the test helper keeps its child private).
fn liteserver_pid(port: u16) -> Option<u32> {
    let listen = format!("127.0.0.1:{port}");
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let has = |text: &str| args.contains(&text.as_bytes());
        (has("ton-liteserver") && has(&listen)).then_some(pid)
    })
}

fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let end = line[start..].find('"')? + start;
    Some(&line[start..end])
}

/// What one scrape of chainsync's `/metrics` tells about the chain.
#[derive(Default)]
struct Scrape {
    /// `chainsync_rpc_requests_total`, per method (all outcomes).
    rpc: BTreeMap<String, f64>,
    /// The same, outcomes other than `ok`.
    failed: f64,
    /// `chainsync_db_transaction_duration_seconds{op="commit_batch"}`: sum and count.
    commit_sum: f64,
    commit_count: f64,
}

async fn scrape(client: &reqwest::Client, url: &str) -> Scrape {
    let page = client
        .get(url)
        .send()
        .await
        .expect("metrics reachable")
        .text()
        .await
        .expect("metrics page");
    let mut out = Scrape::default();
    for line in page.lines() {
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        if line.starts_with("chainsync_rpc_requests_total{") && label(line, "chain") == Some(CHAIN)
        {
            let method = label(line, "method").unwrap_or("?").to_owned();
            *out.rpc.entry(method).or_insert(0.0) += value;
            if label(line, "outcome") != Some("ok") {
                out.failed += value;
            }
        } else if line.starts_with("chainsync_db_transaction_duration_seconds_sum{")
            && label(line, "op") == Some("commit_batch")
        {
            out.commit_sum += value;
        } else if line.starts_with("chainsync_db_transaction_duration_seconds_count{")
            && label(line, "op") == Some("commit_batch")
        {
            out.commit_count += value;
        }
    }
    out
}

/// A sample taken shortly before masterchain block `block` appeared, while chainsync is idle
/// (when its polls keep up), so that a window of samples holds whole polling rounds.
struct Sample {
    block: u64,
    chainsync_ticks: u64,
    liteserver_ticks: u64,
    metrics: Scrape,
}

/// The figures of one run.
struct Figures {
    accounts: usize,
    window: (u64, u64),
    first_commit_head: u64,
    startup_ms: u64,
    cpu_per_block: f64,
    liteserver_cpu_per_block: f64,
    requests_per_block: f64,
    by_method: BTreeMap<String, f64>,
    failed_requests: f64,
    inserted_ms: Vec<f64>,
    visible_ms: Vec<f64>,
    blocks_late: Vec<f64>,
    write_lag_ms: Vec<f64>,
    commit_ms: f64,
    polls_per_block: f64,
    heads_indexed: usize,
    rss_kib: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    values
}

/// The indexed head and when chainsync began writing the poll that first reached it
/// (`head_seen_at`, Unix ms).
async fn indexed(pool: &PgPool) -> Option<(u64, f64)> {
    let row: Option<(Option<i64>, Option<f64>)> = sqlx::query_as(
        "SELECT indexed_block, (extract(epoch FROM head_seen_at) * 1000)::float8
         FROM chain_status WHERE chain = $1",
    )
    .bind(CHAIN)
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    match row {
        Some((Some(head), Some(at))) => Some((head as u64, at)),
        _ => None,
    }
}

async fn run(settings: &Settings, scenario: &Scenario, extra: &[String]) -> Figures {
    let accounts: Vec<Account<'_>> = scenario
        .accounts
        .iter()
        .chain(extra.iter())
        .map(|address| Account {
            role: "deposit",
            address: address.clone(),
            extra: String::new(),
        })
        .collect();
    let n = accounts.len();
    let interval = settings.interval_ms;
    let lead: u64 = env_or("BENCH_TON_LEAD_MS", 3000 + n as u64 / 2);
    // Block 1 lasts until genesis + interval: chainsync starts and polls at head 1 meanwhile.
    let genesis = now_unix_ms() + lead - interval;
    let block_at = |b: u64| genesis + (b - 1) * interval;
    let genesis_arg = genesis.to_string();
    let interval_arg = format!("{interval}ms");
    let steps_arg = settings.steps_per_block.to_string();
    let liteserver = Liteserver::start(&[
        "--block-interval",
        &interval_arg,
        "--steps-per-block",
        &steps_arg,
        "--genesis-unix-ms",
        &genesis_arg,
    ]);
    let liteserver_pid = liteserver_pid(liteserver.port);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_ton_config(
        dir.path(),
        &db.url,
        &[liteserver.port],
        &format!(
            "confirmations = 0\npoll_interval = \"{}ms\"\nstuck_after = \"10m\"",
            settings.poll_ms
        ),
        &accounts,
    );
    let started_ms = now_unix_ms();
    let mut chainsync = Chainsync::run(&config);
    let pid = chainsync.pid();
    let liteserver_ticks = || liteserver_pid.map(cpu_ticks).unwrap_or(0);
    let client = reqwest::Client::new();
    let metrics = metrics_url(&config);

    // The first committed poll.
    let first_commit_head = loop {
        if let Some((head, _)) = indexed(&pool).await {
            break head;
        }
        if let Ok(Some(status)) = chainsync.child.try_wait() {
            panic!(
                "N = {n}: chainsync exited ({status}) before its first poll; see {}",
                chainsync.log.display()
            );
        }
        assert!(
            now_unix_ms() < started_ms + lead + 120_000,
            "N = {n}: no committed poll after {} s; see {}",
            (now_unix_ms() - started_ms) / 1000,
            chainsync.log.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let startup_ms = now_unix_ms() - started_ms;
    let first_block = first_commit_head + 1;
    if first_block > 2 {
        eprintln!(
            "N = {n}: warning: the first poll committed only at head {first_commit_head}, after the \
             chain started; raise BENCH_TON_LEAD_MS"
        );
    }
    eprintln!(
        "N = {n}: first poll committed {startup_ms} ms after start (head {first_commit_head}); \
         measuring from block {first_block}"
    );

    // Samples shortly before each block boundary; the database every WATCH_EVERY.
    let sample_before = interval * 3 / 20;
    let sample_at = |b: u64| block_at(b) - sample_before;
    let deadline = block_at(scenario.last_release) + settings.timeout.as_millis() as u64;
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_block = first_block;
    // Transaction hash → (first seen by the benchmark, inserted_at, mc_seqno_seen).
    let mut visible: HashMap<String, (u64, f64, u64)> = HashMap::new();
    // Indexed head → when chainsync began writing the poll that reached it.
    let mut heads: BTreeMap<u64, f64> = BTreeMap::new();
    let mut max_seqno_seen = 0i64;
    let mut done = false;
    loop {
        if now_unix_ms() >= sample_at(next_block) {
            let chainsync_ticks = cpu_ticks(pid);
            let liteserver_ticks = liteserver_ticks();
            samples.push(Sample {
                block: next_block,
                chainsync_ticks,
                liteserver_ticks,
                metrics: scrape(&client, &metrics).await,
            });
            if done {
                break;
            }
            next_block += 1;
        }
        // A poll's rows become visible together and carry its head.
        let rows: Vec<(Vec<u8>, i64, f64)> = sqlx::query_as(
            "SELECT hash, mc_seqno_seen, (extract(epoch FROM inserted_at) * 1000)::float8
             FROM ton_transactions WHERE chain = $1 AND mc_seqno_seen >= $2",
        )
        .bind(CHAIN)
        .bind(max_seqno_seen)
        .fetch_all(&pool)
        .await
        .expect("ton_transactions");
        let seen_at = now_unix_ms();
        for (hash, seqno, inserted) in rows {
            max_seqno_seen = max_seqno_seen.max(seqno);
            visible
                .entry(hex::encode(hash))
                .or_insert((seen_at, inserted, seqno as u64));
        }
        if let Some((head, at)) = indexed(&pool).await {
            heads.entry(head).or_insert(at);
        }
        let arrived = scenario
            .release
            .keys()
            .filter(|h| visible.contains_key(*h))
            .count();
        let head = heads.keys().next_back().copied().unwrap_or(0);
        // Done once every row is in and the head is 2 past the last release; the window then
        // closes at the next sample.
        if arrived == scenario.release.len() && head >= scenario.last_release + 2 {
            done = true;
        }
        if let Ok(Some(status)) = chainsync.child.try_wait() {
            panic!(
                "N = {n}: chainsync exited ({status}) during the run; see {}",
                chainsync.log.display()
            );
        }
        assert!(
            done || seen_at < deadline,
            "N = {n}: timed out: {arrived} of {} many_deposits transactions stored, indexed head \
             {head} (last release at block {}), {} s after the last release; see {} and {}",
            scenario.release.len(),
            scenario.last_release,
            settings.timeout.as_secs(),
            chainsync.log.display(),
            liteserver.log.display()
        );
        let wake = (now_unix_ms() + WATCH_EVERY.as_millis() as u64).min(sample_at(next_block));
        tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now_unix_ms()))).await;
    }
    let rss_kib = common::peak_rss_kib(pid);
    chainsync.kill9();
    drop(liteserver);

    let (first, last) = (&samples[0], &samples[samples.len() - 1]);
    let blocks = (last.block - first.block) as f64;
    let rpc = |s: &Sample, m: &str| s.metrics.rpc.get(m).copied().unwrap_or(0.0);
    if std::env::var_os("BENCH_TON_DEBUG").is_some() {
        for pair in samples.windows(2) {
            let deltas: Vec<f64> = METHODS
                .iter()
                .map(|m| rpc(&pair[1], m) - rpc(&pair[0], m))
                .collect();
            eprintln!(
                "block {}: chainsync {} ticks, requests {deltas:?}, head written at T{:+.0} ms",
                pair[0].block,
                pair[1].chainsync_ticks - pair[0].chainsync_ticks,
                heads
                    .get(&pair[0].block)
                    .map_or(f64::NAN, |t| t - block_at(pair[0].block) as f64)
            );
        }
    }
    let by_method: BTreeMap<String, f64> = METHODS
        .iter()
        .map(|m| (m.to_string(), (rpc(last, m) - rpc(first, m)) / blocks))
        .collect();
    let mut inserted_ms = Vec::new();
    let mut visible_ms = Vec::new();
    let mut blocks_late = Vec::new();
    for (hash, release) in &scenario.release {
        let (seen, inserted, seqno) = visible[hash];
        let landed = block_at(*release) as f64;
        inserted_ms.push(inserted - landed);
        visible_ms.push(seen as f64 - landed);
        blocks_late.push(seqno as f64 - *release as f64);
    }
    // Head change → write: for each block of the window, the first poll write at or past it.
    let write_lag_ms: Vec<f64> = (first.block..last.block)
        .filter_map(|b| {
            heads
                .range(b..)
                .map(|(_, t)| *t)
                .reduce(f64::min)
                .map(|t| t - block_at(b) as f64)
        })
        .collect();
    let commits = last.metrics.commit_count - first.metrics.commit_count;
    Figures {
        accounts: n,
        window: (first.block, last.block),
        first_commit_head,
        startup_ms,
        cpu_per_block: (last.chainsync_ticks - first.chainsync_ticks) as f64
            / settings.clk_tck
            / blocks,
        liteserver_cpu_per_block: (last.liteserver_ticks - first.liteserver_ticks) as f64
            / settings.clk_tck
            / blocks,
        requests_per_block: by_method.values().sum(),
        by_method,
        failed_requests: last.metrics.failed - first.metrics.failed,
        inserted_ms: sorted(inserted_ms),
        visible_ms: sorted(visible_ms),
        blocks_late: sorted(blocks_late),
        write_lag_ms: sorted(write_lag_ms),
        commit_ms: 1000.0 * (last.metrics.commit_sum - first.metrics.commit_sum) / commits,
        polls_per_block: commits / blocks,
        heads_indexed: heads.range(first.block..last.block).count(),
        rss_kib,
    }
}

fn ms3(v: &[f64]) -> String {
    format!(
        "{:.0}/{:.0}/{:.0} ms",
        percentile(v, 50.0),
        percentile(v, 95.0),
        percentile(v, 100.0)
    )
}

fn print_run(f: &Figures, scenario: &Scenario) {
    let (from, to) = f.window;
    println!(
        "-- N = {}: blocks {from}..{} ({} blocks; many_deposits released in {}..{}); first poll \
         committed {} ms after start, at head {}",
        f.accounts,
        to - 1,
        to - from,
        scenario.first_release,
        scenario.last_release,
        f.startup_ms,
        f.first_commit_head
    );
    let methods: Vec<String> = f
        .by_method
        .iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(m, v)| format!("{m} {v:.1}"))
        .collect();
    println!(
        "   per block: chainsync CPU {:.4} s, liteserver CPU {:.4} s, {:.1} requests ({}), {} failed \
         in window; {:.1} polls/block, write+commit {:.1} ms mean",
        f.cpu_per_block,
        f.liteserver_cpu_per_block,
        f.requests_per_block,
        methods.join(", "),
        f.failed_requests,
        f.polls_per_block,
        f.commit_ms
    );
    println!(
        "   landing → row, p50/p95/max ({} txs): inserted_at {}, seen by a 50 ms reader {}; \
         mc_seqno_seen − release max {:.0} blocks",
        f.inserted_ms.len(),
        ms3(&f.inserted_ms),
        ms3(&f.visible_ms),
        percentile(&f.blocks_late, 100.0)
    );
    println!(
        "   head change → poll write (head_seen_at) p50/p95/max {}; {} of {} heads written; \
         peak RSS {:.1} MiB",
        ms3(&f.write_lag_ms),
        f.heads_indexed,
        to - from,
        f.rss_kib as f64 / 1024.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let counts: Vec<usize> = std::env::var("BENCH_TON_ACCOUNTS")
        .unwrap_or_else(|_| "200,10000".into())
        .split(',')
        .map(|v| v.trim().parse().expect("BENCH_TON_ACCOUNTS: numbers"))
        .collect();
    let (clk_tck, clk_tck_assumed) = clock_ticks();
    let settings = Settings {
        interval_ms: env_or("BENCH_TON_BLOCK_INTERVAL_MS", 1000),
        steps_per_block: env_or("BENCH_TON_STEPS_PER_BLOCK", 2),
        poll_ms: env_or("BENCH_TON_POLL_INTERVAL_MS", 200),
        timeout: Duration::from_secs(env_or("BENCH_TON_TIMEOUT_S", 180)),
        clk_tck,
        clk_tck_assumed,
    };
    let scenario = many_deposits(settings.steps_per_block);
    let most = counts.iter().copied().max().unwrap_or(0);
    let phantoms = phantom_accounts(
        most.saturating_sub(scenario.accounts.len()),
        &scenario.accounts,
    );
    let mut results = Vec::new();
    for &n in &counts {
        assert!(
            n >= scenario.accounts.len(),
            "BENCH_TON_ACCOUNTS: at least the {} many_deposits accounts",
            scenario.accounts.len()
        );
        eprintln!("== bench-ton: N = {n} watched accounts");
        let extra = &phantoms[..n - scenario.accounts.len()];
        results.push(run(&settings, &scenario, extra).await);
    }

    println!(
        "settings: block interval {} ms, {} steps per block, poll_interval {} ms, confirmations 0; \
         CLK_TCK {}{}",
        settings.interval_ms,
        settings.steps_per_block,
        settings.poll_ms,
        settings.clk_tck,
        if settings.clk_tck_assumed {
            " (assumed: getconf failed)"
        } else {
            " (getconf)"
        }
    );
    for figures in &results {
        print_run(figures, &scenario);
    }
    let base = &results[0];
    println!();
    let mut header = format!("{:<34}", "summary");
    for f in &results {
        header.push_str(&format!("{:>12}", format!("N={}", f.accounts)));
    }
    for f in &results[1..] {
        header.push_str(&format!(
            "{:>12}",
            format!("{}/{}", f.accounts, base.accounts)
        ));
    }
    println!("{header}");
    type Pick = fn(&Figures) -> f64;
    let rows: Vec<(&str, Pick)> = vec![
        ("chainsync CPU s / block", |f| f.cpu_per_block),
        ("liteserver CPU s / block", |f| f.liteserver_cpu_per_block),
        ("requests / block", |f| f.requests_per_block),
        ("  get_account_state / block", |f| {
            f.by_method["get_account_state"]
        }),
        ("  get_transactions / block", |f| {
            f.by_method["get_transactions"]
        }),
        ("  get_masterchain_info / block", |f| {
            f.by_method["get_masterchain_info"]
        }),
        ("landing → inserted_at p50 ms", |f| {
            percentile(&f.inserted_ms, 50.0)
        }),
        ("landing → inserted_at p95 ms", |f| {
            percentile(&f.inserted_ms, 95.0)
        }),
        ("landing → inserted_at max ms", |f| {
            percentile(&f.inserted_ms, 100.0)
        }),
        ("landing → visible p95 ms", |f| {
            percentile(&f.visible_ms, 95.0)
        }),
        ("head change → poll write p50 ms", |f| {
            percentile(&f.write_lag_ms, 50.0)
        }),
        ("head change → poll write max ms", |f| {
            percentile(&f.write_lag_ms, 100.0)
        }),
        ("peak RSS MiB", |f| f.rss_kib as f64 / 1024.0),
    ];
    for (name, pick) in rows {
        let mut line = format!("{name:<34}");
        for f in &results {
            let value = pick(f);
            let digits = if value.abs() >= 100.0 {
                0
            } else if value.abs() >= 1.0 {
                2
            } else {
                4
            };
            line.push_str(&format!("{value:>12.digits$}"));
        }
        for f in &results[1..] {
            line.push_str(&format!("{:>12.2}", pick(f) / pick(base)));
        }
        println!("{line}");
    }
}
