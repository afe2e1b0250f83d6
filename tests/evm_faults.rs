//! The EVM listener under faults: a misbehaving RPC provider and `kill -9` in the middle of a
//! backfill. Real anvil, real PostgreSQL, the real `chainsync` binary.
//!
//! Randomness comes from a seed printed at the start of each test; set `CHAINSYNC_FAULT_SEED` to
//! replay one.

mod common;

use common::{contracts, watched};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chainsync::devnet::{deploy, Traffic};
use common::{
    assert_stored_equals_node, indexed_block, metric_sum, wait_indexed, write_config, Anvil,
    Chainsync, TestDb,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The seed of a test: `CHAINSYNC_FAULT_SEED` when set, else random; printed either way.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("CHAINSYNC_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{test}: seed {seed} (replay with CHAINSYNC_FAULT_SEED={seed})");
    seed
}

// ---------------------------------------------------------------------------------------------
// A faulty JSON-RPC provider: an HTTP/1.1 proxy in front of anvil.
// ---------------------------------------------------------------------------------------------

/// Most logs one `eth_getLogs` answer may hold before the proxy refuses the range.
const MAX_LOGS_PER_ANSWER: usize = 50;

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// Forward and answer.
    None,
    /// HTTP 429 with a provider's plain-text body.
    RateLimited,
    /// HTTP 500.
    ServerError,
    /// Answer only after a pause (shorter than chainsync's request timeout).
    Stall,
    /// Close the connection without answering.
    Drop,
    /// Refuse an `eth_getLogs` range with "response is too big", naming no range.
    TooBig,
    /// Refuse an `eth_getLogs` answer of too many logs, naming a smaller range.
    TooManyResults,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    rng: Mutex<StdRng>,
    counts: Mutex<BTreeMap<Fault, u64>>,
    requests: AtomicU64,
}

impl ProxyState {
    fn count(&self, fault: Fault) {
        let mut counts = self.counts.lock().expect("counts lock");
        *counts.entry(fault).or_default() += 1;
    }

    /// The fault for the next request (about one in five) and the pause of a stall.
    fn draw(&self) -> (Fault, Duration, bool) {
        let mut rng = self.rng.lock().expect("rng lock");
        let roll = rng.gen_range(0..100u32);
        let fault = match roll {
            0..=4 => Fault::RateLimited,
            5..=9 => Fault::ServerError,
            10..=12 => Fault::Stall,
            13..=16 => Fault::Drop,
            _ => Fault::None,
        };
        let stall = Duration::from_millis(rng.gen_range(2_000..3_000));
        let too_big = rng.gen_range(0..100u32) < 8;
        (fault, stall, too_big)
    }
}

/// The proxy, serving until dropped.
struct FaultyRpc {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyRpc {
    async fn start(upstream: String, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState {
            upstream,
            client: reqwest::Client::new(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            counts: Mutex::new(BTreeMap::new()),
            requests: AtomicU64::new(0),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve_connection(socket, shared.clone()));
            }
        });
        Self { addr, state, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn summary(&self) -> String {
        format!(
            "{} requests, faults {:?}",
            self.state.requests.load(Ordering::Relaxed),
            self.state.counts.lock().expect("counts lock")
        )
    }
}

impl Drop for FaultyRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request (Content-Length bodies only) and returns its body, or `None` when
/// the client closed the connection.
async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 16 * 1024];
    let header_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = buffer[header_end..header_end + length].to_vec();
    buffer.drain(..header_end + length);
    Some(body)
}

async fn respond(
    socket: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body).await?;
    socket.flush().await
}

fn hex_number(value: &Value) -> Option<u64> {
    u64::from_str_radix(value.as_str()?.strip_prefix("0x")?, 16).ok()
}

/// A JSON-RPC error answer to `request`.
fn rpc_error(request: &Value, code: i64, message: &str) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": code, "message": message}})
        .to_string()
        .into_bytes()
}

/// Refuses an `eth_getLogs` answer the way providers do: too many logs (naming the range that
/// would fit) or, when `too_big`, a size error without a range. Single blocks always pass.
fn refuse_logs(request: &Value, answer: &Value, too_big: bool) -> Option<(Fault, Vec<u8>)> {
    if request["method"] != "eth_getLogs" {
        return None;
    }
    let filter = &request["params"][0];
    let (from, to) = (
        hex_number(&filter["fromBlock"])?,
        hex_number(&filter["toBlock"])?,
    );
    if to <= from {
        return None;
    }
    let logs = answer["result"].as_array()?;
    if logs.len() > MAX_LOGS_PER_ANSWER {
        // The first block that does not fit ends the suggested range (at least one block).
        let first_over = hex_number(&logs[MAX_LOGS_PER_ANSWER]["blockNumber"])?;
        let fits = first_over.saturating_sub(1).max(from);
        let message = format!(
            "query returned more than {MAX_LOGS_PER_ANSWER} results. Try with this block range [{from:#x}, {fits:#x}]."
        );
        return Some((Fault::TooManyResults, rpc_error(request, -32005, &message)));
    }
    too_big.then(|| {
        (
            Fault::TooBig,
            rpc_error(request, -32602, "response is too big"),
        )
    })
}

async fn serve_connection(mut socket: TcpStream, state: Arc<ProxyState>) {
    let mut buffer = Vec::new();
    while let Some(body) = read_request(&mut socket, &mut buffer).await {
        state.requests.fetch_add(1, Ordering::Relaxed);
        let (fault, stall, too_big) = state.draw();
        let written = match fault {
            Fault::Drop => {
                state.count(fault);
                return;
            }
            Fault::RateLimited => {
                state.count(fault);
                respond(
                    &mut socket,
                    "429 Too Many Requests",
                    "text/plain",
                    b"Too Many Requests",
                )
                .await
            }
            Fault::ServerError => {
                state.count(fault);
                respond(
                    &mut socket,
                    "500 Internal Server Error",
                    "text/plain",
                    b"Internal Server Error",
                )
                .await
            }
            _ => {
                if fault == Fault::Stall {
                    state.count(fault);
                    tokio::time::sleep(stall).await;
                }
                forward(&mut socket, &state, &body, too_big).await
            }
        };
        if written.is_err() {
            return;
        }
    }
}

async fn forward(
    socket: &mut TcpStream,
    state: &ProxyState,
    body: &[u8],
    too_big: bool,
) -> std::io::Result<()> {
    let upstream = state
        .client
        .post(&state.upstream)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await;
    let answer = match upstream {
        Ok(response) => response.bytes().await.ok(),
        Err(_) => None,
    };
    let Some(answer) = answer else {
        return respond(socket, "502 Bad Gateway", "text/plain", b"upstream failed").await;
    };
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let parsed: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    if let Some((fault, refusal)) = refuse_logs(&request, &parsed, too_big) {
        state.count(fault);
        return respond(socket, "200 OK", "application/json", &refusal).await;
    }
    respond(socket, "200 OK", "application/json", &answer).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_rpc_still_yields_ground_truth() {
    let seed = seed("faulty_rpc_still_yields_ground_truth");
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), seed)
        .await
        .expect("traffic");
    traffic.flood(3_000).await.expect("flood");
    let head = anvil.block_number().await;
    let proxy = FaultyRpc::start(anvil.rpc_url(), seed).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &proxy.url(),
        &db.url,
        &contracts(&deployment),
        "",
    );
    let started = std::time::Instant::now();
    let _chainsync = Chainsync::run(&config);
    wait_indexed(&pool, head, Duration::from_secs(300)).await;
    println!(
        "indexed {head} blocks through the faulty provider in {:?}: {}",
        started.elapsed(),
        proxy.summary()
    );

    assert_stored_equals_node(
        &anvil.rpc_url(),
        &pool,
        &watched(&deployment, &traffic),
        (0, head),
        3_000,
    )
    .await;

    let hinted = metric_sum(
        &config,
        "chainsync_getlogs_range_reductions_total",
        &["chain=\"devnet\"", "reason=\"provider_hint\""],
    )
    .await;
    let halved = metric_sum(
        &config,
        "chainsync_getlogs_range_reductions_total",
        &["chain=\"devnet\"", "reason=\"halved\""],
    )
    .await;
    println!("range reductions: {hinted} by provider hint, {halved} halved");
    assert!(hinted > 0.0, "no range reduction from a provider hint");
    let mut failed = 0.0;
    for outcome in ["rate_limited", "server_error", "transport"] {
        let count = metric_sum(
            &config,
            "chainsync_rpc_requests_total",
            &["chain=\"devnet\"", &format!("outcome=\"{outcome}\"")],
        )
        .await;
        println!("rpc requests with outcome {outcome}: {count}");
        failed += count;
    }
    assert!(failed > 0.0, "no failed RPC request was counted");
}

// ---------------------------------------------------------------------------------------------
// kill -9 during a backfill.
// ---------------------------------------------------------------------------------------------

/// Every stored log and cursor of `devnet` as text, in key order, without wall-clock columns.
async fn database_rows(pool: &PgPool) -> Vec<String> {
    let mut rows: Vec<String> = sqlx::query_scalar(
        "SELECT row(chain, block_hash, tx_hash, log_index, block_number, address, topic0, topic1,
                    topic2, topic3, data, event, decode_status, decoded, removed)::text
         FROM evm_logs WHERE chain = 'devnet'
         ORDER BY chain, block_hash, tx_hash, log_index",
    )
    .fetch_all(pool)
    .await
    .expect("evm_logs rows");
    let cursors: Vec<String> = sqlx::query_scalar(
        "SELECT row(address, role, start_block, indexed_to, discovered_by_tx)::text
         FROM contract_cursors WHERE chain = 'devnet' ORDER BY address",
    )
    .fetch_all(pool)
    .await
    .expect("contract_cursors rows");
    rows.extend(cursors);
    rows
}

/// md5 of the rows, one per line.
async fn digest(pool: &PgPool, rows: &[String]) -> String {
    sqlx::query_scalar("SELECT md5($1)")
        .bind(rows.join("\n"))
        .fetch_one(pool)
        .await
        .expect("md5")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_during_backfill_leaves_the_same_database() {
    let seed = seed("kill_nine_during_backfill_leaves_the_same_database");
    let mut rng = StdRng::seed_from_u64(seed);
    let anvil = Anvil::start().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), seed)
        .await
        .expect("traffic");
    traffic.flood(5_000).await.expect("flood");
    let head = anvil.block_number().await;

    // Run A: uninterrupted.
    let db_a = TestDb::new().await;
    let pool_a = db_a.pool().await;
    let dir_a = tempfile::tempdir().expect("tempdir");
    let config_a = write_config(
        dir_a.path(),
        &anvil.rpc_url(),
        &db_a.url,
        &contracts(&deployment),
        "max_block_range = 5",
    );
    let started = std::time::Instant::now();
    let mut run_a = Chainsync::run(&config_a);
    wait_indexed(&pool_a, head, Duration::from_secs(300)).await;
    run_a.kill9();
    let backfill = started.elapsed();
    println!("run A indexed {head} blocks in {backfill:?}");
    assert_stored_equals_node(
        &anvil.rpc_url(),
        &pool_a,
        &watched(&deployment, &traffic),
        (0, head),
        5_000,
    )
    .await;

    // Run B: killed at random points, restarted each time.
    let db_b = TestDb::new().await;
    let pool_b = db_b.pool().await;
    let dir_b = tempfile::tempdir().expect("tempdir");
    let config_b = write_config(
        dir_b.path(),
        &anvil.rpc_url(),
        &db_b.url,
        &contracts(&deployment),
        // A request budget stretches run B's backfill to several seconds, so every planned kill
        // lands mid-backfill however fast the machine is; the budget changes timing, not data.
        "max_block_range = 5\nrequests_per_second = 15",
    );
    // Five kills once the backfill has passed a random height, three at a random moment after
    // a start (start-up included), in a random order.
    let mut heights: Vec<u64> = (0..5).map(|_| rng.gen_range(1..head - 10)).collect();
    heights.sort_unstable();
    let mut plan: Vec<Option<u64>> = heights.into_iter().map(Some).collect();
    for _ in 0..3 {
        let at = rng.gen_range(0..=plan.len());
        plan.insert(at, None);
    }
    let mut kills = 0;
    for kill_at in plan {
        let mut run = Chainsync::run(&config_b);
        match kill_at {
            Some(height) => {
                wait_indexed(&pool_b, height, Duration::from_secs(300)).await;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..50))).await;
            }
            None => tokio::time::sleep(Duration::from_millis(rng.gen_range(50..800))).await,
        }
        run.kill9();
        let reached = indexed_block(&pool_b, "devnet").await;
        if reached.is_some_and(|b| b >= head) {
            println!("run B was done before kill -9 #{}", kills + 1);
            break;
        }
        kills += 1;
        println!("kill -9 #{kills} at indexed block {reached:?} of {head}");
    }
    assert!(kills >= 5, "the backfill ended after only {kills} kills");
    let _last = Chainsync::run(&config_b);
    wait_indexed(&pool_b, head, Duration::from_secs(300)).await;

    let rows_a = database_rows(&pool_a).await;
    let rows_b = database_rows(&pool_b).await;
    let (digest_a, digest_b) = (
        digest(&pool_a, &rows_a).await,
        digest(&pool_b, &rows_b).await,
    );
    println!(
        "run A: {} rows, md5 {digest_a}; run B: {} rows, md5 {digest_b}",
        rows_a.len(),
        rows_b.len()
    );
    if digest_a != digest_b {
        let first = rows_a
            .iter()
            .zip(&rows_b)
            .position(|(a, b)| a != b)
            .unwrap_or(rows_a.len().min(rows_b.len()));
        panic!(
            "the databases differ ({} vs {} rows); first difference at row {first}:\n  A: {:?}\n  B: {:?}",
            rows_a.len(),
            rows_b.len(),
            rows_a.get(first),
            rows_b.get(first)
        );
    }
}
