//! Test harness: a real anvil on a free port and a fresh PostgreSQL database per test, so
//! tests run in parallel and clean up after themselves.
//!
//! Environment: `CHAINSYNC_ANVIL` (path to anvil; default `devnet/node_modules/.bin/anvil`) and
//! `CHAINSYNC_TEST_DATABASE_URL` (admin URL without a database name; default
//! `postgres://postgres@127.0.0.1:5432`).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool};

pub mod ton;

/// Peak resident set size of a process in KiB (`VmHWM`), 0 when it cannot be read.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free TCP port on 127.0.0.1 (released before returning; the caller binds it soon after).
///
/// Drawn at random below Linux's ephemeral range (32768 and up) rather than asked of the kernel:
/// `bind(0)` hands out ephemeral ports, and a port one test just released could be handed to a
/// test running beside it before the first one's process binds it again.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = rand::Rng::gen_range(&mut rand::thread_rng(), 10_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between 10000 and 32000");
}

/// A running anvil, killed on drop.
pub struct Anvil {
    child: Child,
    port: u16,
}

impl Anvil {
    /// anvil with automine (a block per transaction).
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// anvil with extra arguments (e.g. `["--block-time", "1"]`).
    pub async fn start_with(args: &[&str]) -> Self {
        let binary = std::env::var("CHAINSYNC_ANVIL")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root().join("devnet/node_modules/.bin/anvil"));
        assert!(
            binary.exists(),
            "anvil not found at {}: run `npm ci --prefix devnet` (make test does)",
            binary.display()
        );
        for _attempt in 0..5 {
            let port = free_port();
            let mut child = Command::new(&binary)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--silent", "--no-request-size-limit"])
                // Recent states in memory only: otherwise anvil spills old states to
                // ~/.foundry/anvil/tmp and a killed anvil leaves them there, run after run.
                .args(["--prune-history", "256"])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("anvil starts");
            let deadline = Instant::now() + Duration::from_secs(20);
            let url = format!("http://127.0.0.1:{port}");
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken: try another
                }
                if rpc(&url, "eth_chainId", serde_json::json!([]))
                    .await
                    .is_ok()
                {
                    return Self { child, port };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("anvil did not start");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// A raw JSON-RPC call against this anvil.
    pub async fn rpc(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        rpc(&self.rpc_url(), method, params).await
    }

    /// Mines `blocks` empty blocks.
    pub async fn mine(&self, blocks: u64) {
        self.rpc("anvil_mine", serde_json::json!([format!("0x{blocks:x}")]))
            .await
            .expect("anvil_mine");
    }

    /// The current block number.
    pub async fn block_number(&self) -> u64 {
        let value = self
            .rpc("eth_blockNumber", serde_json::json!([]))
            .await
            .expect("eth_blockNumber");
        u64::from_str_radix(value.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)
            .expect("hex block number")
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One JSON-RPC call over HTTP.
pub async fn rpc(
    url: &str,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let value: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    if let Some(error) = value.get("error") {
        return Err(error.to_string());
    }
    Ok(value
        .get("result")
        .cloned()
        .unwrap_or(serde_json::Value::Null))
}

/// The admin URL (no database name).
pub fn admin_url() -> String {
    std::env::var("CHAINSYNC_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh database, dropped (with its connections) when the value goes away.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!(
            "chainsync_test_{}_{}_{}",
            std::process::id(),
            DB_COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut admin = PgConnection::connect(&format!("{}/postgres", admin_url()))
            .await
            .expect("PostgreSQL reachable at CHAINSYNC_TEST_DATABASE_URL or 127.0.0.1:5432");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = format!("{}/{name}", admin_url());
        Self { name, url }
    }

    /// A pool on the test database with migrations applied.
    pub async fn pool(&self) -> PgPool {
        let pool = PgPool::connect(&self.url).await.expect("connect test db");
        chainsync::db::migrate(&pool).await.expect("migrations");
        pool
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // CHAINSYNC_KEEP_TEST_DB=1 keeps the database for a post-mortem.
        if std::env::var_os("CHAINSYNC_KEEP_TEST_DB").is_some() {
            eprintln!("kept test database {}", self.name);
            return;
        }
        let name = self.name.clone();
        let admin = format!("{}/postgres", admin_url());
        // Drop runs inside an async test: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async move {
                    if let Ok(mut conn) = PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            }
        })
        .join();
    }
}

/// Waits until `check` returns `Some`, polling every 200 ms, or panics after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `[[evm]]` keys test configurations use unless `extra` sets them.
const TEST_CHAIN_DEFAULTS: &[(&str, &str)] = &[
    ("confirmations", "2"),
    ("poll_interval", "\"200ms\""),
    ("max_block_range", "500"),
    ("requests_per_second", "10000"),
    ("reorg_window", "64"),
];

/// Writes a configuration for one EVM chain named `devnet` at `rpc_url` with the given
/// contracts `(role, address, start_block)`. `extra` holds `key = value` lines for the `[[evm]]`
/// table; a key it sets replaces the test default of [`TEST_CHAIN_DEFAULTS`].
pub fn write_config(
    dir: &std::path::Path,
    rpc_url: &str,
    db_url: &str,
    contracts: &[(&str, String, u64)],
    extra: &str,
) -> PathBuf {
    let api_port = free_port();
    let metrics_port = free_port();
    let overridden: toml::Table = extra.parse().expect("extra is TOML key = value lines");
    let mut chain_keys = String::new();
    for (key, value) in TEST_CHAIN_DEFAULTS {
        // `finality` replaces `confirmations` (the two are exclusive).
        let replaced = *key == "confirmations" && overridden.contains_key("finality");
        if !overridden.contains_key(*key) && !replaced {
            chain_keys.push_str(&format!("{key} = {value}\n"));
        }
    }
    chain_keys.push_str(extra);
    let mut text = format!(
        r#"[database]
url = "{db_url}"
max_connections = 4
api_max_connections = 2

[api]
listen = "127.0.0.1:{api_port}"

[metrics]
listen = "127.0.0.1:{metrics_port}"

[log]
level = "info,chainsync=debug"

[[evm]]
name = "devnet"
chain_id = 31337
rpc_urls = ["{rpc_url}"]
{chain_keys}
"#
    );
    for (role, address, start) in contracts {
        text.push_str(&format!(
            "\n[[evm.contracts]]\nrole = \"{role}\"\naddress = \"{address}\"\nstart_block = {start}\n"
        ));
    }
    let path = dir.join("chainsync.toml");
    std::fs::write(&path, text).expect("write test config");
    path
}

/// The metrics address of a configuration written by [`write_config`].
pub fn metrics_url(config: &std::path::Path) -> String {
    let text = std::fs::read_to_string(config).expect("config readable");
    let table: toml::Table = text.parse().expect("config parses");
    let listen = table["metrics"]["listen"]
        .as_str()
        .expect("metrics.listen")
        .to_owned();
    format!("http://{listen}/metrics")
}

/// A `chainsync run` child process, killed (SIGKILL) on drop.
pub struct Chainsync {
    pub child: Child,
    /// Where its log goes (kept after the test, under `target/test-logs`).
    pub log: PathBuf,
}

impl Chainsync {
    /// Starts `chainsync run --config <config>`, logging to `target/test-logs/`.
    pub fn run(config: &std::path::Path) -> Self {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        // Logs outlive the test's temporary directory, for post-mortems.
        let dir = repo_root().join("target/test-logs");
        let _ = std::fs::create_dir_all(&dir);
        let log_path = dir.join(format!(
            "chainsync-{}-{}.log",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        eprintln!("chainsync log: {}", log_path.display());
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_chainsync"))
            .args(["run", "--config"])
            .arg(config)
            .current_dir(repo_root())
            .env_remove("DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("chainsync starts");
        Self {
            child,
            log: log_path,
        }
    }

    /// Whether its log so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains(text))
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Chainsync {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The indexed height recorded in `chain_status` for `chain`.
pub async fn indexed_block(pool: &PgPool, chain: &str) -> Option<u64> {
    let value: Option<Option<i64>> =
        sqlx::query_scalar("SELECT indexed_block FROM chain_status WHERE chain = $1")
            .bind(chain)
            .fetch_optional(pool)
            .await
            .ok()?;
    value.flatten().and_then(|v| u64::try_from(v).ok())
}

/// Ground truth: every log of `addresses` in `[from, to]` by `eth_getLogs`, as
/// (block hash, tx hash, log index) hex strings, sorted.
pub async fn node_logs(
    rpc_url: &str,
    addresses: &[String],
    from: u64,
    to: u64,
) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let end = to.min(start + 999);
        let logs = rpc(
            rpc_url,
            "eth_getLogs",
            serde_json::json!([{"address": addresses, "fromBlock": format!("0x{start:x}"), "toBlock": format!("0x{end:x}")}]),
        )
        .await
        .expect("eth_getLogs");
        for log in logs.as_array().cloned().unwrap_or_default() {
            let index = log["logIndex"]
                .as_str()
                .unwrap_or("0x0")
                .trim_start_matches("0x");
            out.push((
                log["blockHash"].as_str().unwrap_or_default().to_lowercase(),
                log["transactionHash"]
                    .as_str()
                    .unwrap_or_default()
                    .to_lowercase(),
                u64::from_str_radix(index, 16).unwrap_or(0),
            ));
        }
        start = end + 1;
    }
    out.sort();
    out
}

/// Stored non-removed logs of `chain` in `[from, to]`, in the same form as [`node_logs`].
pub async fn stored_logs(
    pool: &PgPool,
    chain: &str,
    from: u64,
    to: u64,
) -> Vec<(String, String, u64)> {
    let rows: Vec<(Vec<u8>, Vec<u8>, i32)> = sqlx::query_as(
        "SELECT block_hash, tx_hash, log_index FROM evm_logs
         WHERE chain = $1 AND NOT removed AND block_number BETWEEN $2 AND $3",
    )
    .bind(chain)
    .bind(from as i64)
    .bind(to as i64)
    .fetch_all(pool)
    .await
    .expect("stored logs");
    let mut out: Vec<(String, String, u64)> = rows
        .into_iter()
        .map(|(b, t, i)| {
            (
                format!("0x{}", hex::encode(b)),
                format!("0x{}", hex::encode(t)),
                i as u64,
            )
        })
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Configuration variants (used by the fault-injection tests).
// ---------------------------------------------------------------------------------------------

/// The devnet contracts a test configuration watches (role, address, start block).
pub fn contracts(deployment: &chainsync::devnet::Deployment) -> Vec<(&'static str, String, u64)> {
    vec![
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
    ]
}

/// The configured contracts plus every producer clone: every address whose logs chainsync holds.
pub fn watched(
    deployment: &chainsync::devnet::Deployment,
    traffic: &chainsync::devnet::Traffic,
) -> Vec<String> {
    let mut all = vec![
        format!("{:#x}", deployment.manager),
        format!("{:#x}", deployment.producer_storage),
    ];
    for clone in deployment
        .producers
        .iter()
        .chain(traffic.producer_clones().iter())
    {
        let text = format!("{clone:#x}");
        if !all.contains(&text) {
            all.push(text);
        }
    }
    all
}

/// Waits until chain `devnet` is indexed up to `target`.
pub async fn wait_indexed(pool: &PgPool, target: u64, deadline: Duration) {
    wait_for(&format!("indexed block >= {target}"), deadline, || async {
        indexed_block(pool, "devnet").await.filter(|b| *b >= target)
    })
    .await;
}

/// Scrapes the `/metrics` of the instance run with `config` and sums every sample of `name`
/// whose labels include all of `labels` (`key="value"`); 0 when there is none.
pub async fn metric_sum(config: &std::path::Path, name: &str, labels: &[&str]) -> f64 {
    let body = reqwest::get(metrics_url(config))
        .await
        .expect("metrics reachable")
        .text()
        .await
        .expect("metrics body");
    body.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Asserts that the non-removed logs stored for chain `devnet` in `[from, to]` equal the node's
/// `eth_getLogs` for `addresses`, row for row, and that there are at least `at_least`.
pub async fn assert_stored_equals_node(
    rpc_url: &str,
    pool: &PgPool,
    addresses: &[String],
    (from, to): (u64, u64),
    at_least: usize,
) {
    let truth = node_logs(rpc_url, addresses, from, to).await;
    assert!(
        truth.len() >= at_least,
        "only {} logs on the node",
        truth.len()
    );
    let stored = stored_logs(pool, "devnet", from, to).await;
    assert_eq!(
        stored.len(),
        truth.len(),
        "row count differs from eth_getLogs"
    );
    assert_eq!(stored, truth, "stored logs differ from eth_getLogs");
}
