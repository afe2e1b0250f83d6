//! Operating the EVM listener end to end: `chainsync rewind`, a database of another chain, a
//! contract added to the configuration later, a fork deeper than the reorg window, a node that
//! lags behind, and head notifications over WebSocket. Real anvil, real PostgreSQL, the real
//! `chainsync` binary.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chainsync::devnet::{deploy, Traffic};
use common::{
    assert_stored_equals_node, contracts, indexed_block, metric_sum, node_logs, stored_logs,
    wait_for, wait_indexed, watched, write_config, Anvil, Chainsync, TestDb,
};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A block number above any the tests reach (the upper end of "everything from here on").
const LAST_BLOCK: u64 = i64::MAX as u64;

/// Runs `n` traffic steps as fast as the node mines them.
async fn steps(traffic: &mut Traffic, n: u64) {
    traffic
        .run_steps(1000.0, Some(n), std::future::pending())
        .await
        .expect("traffic steps");
}

/// Runs the `chainsync` binary with `args` and `--config <config>`, to completion.
fn chainsync_cli(config: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_chainsync"))
        .args(args)
        .arg("--config")
        .arg(config)
        .current_dir(common::repo_root())
        .env_remove("DATABASE_URL")
        .output()
        .expect("chainsync runs")
}

/// One `SELECT count(*) ...` (or any single bigint) on the test database.
async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

/// The stored `indexed_to` of one contract of chain `devnet`.
async fn cursor_of(pool: &PgPool, address: &str) -> Option<i64> {
    let bytes = hex::decode(address.trim_start_matches("0x")).expect("hex address");
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT indexed_to FROM contract_cursors WHERE chain = 'devnet' AND address = $1",
    )
    .bind(bytes)
    .fetch_optional(pool)
    .await
    .expect("contract cursor")
    .flatten()
}

/// Waits until no session holds an advisory lock on the test database (a killed instance's
/// session is gone).
async fn wait_unlocked(pool: &PgPool) {
    wait_for(
        "the killed instance's lock to be released",
        Duration::from_secs(30),
        || async {
            let holders = count(
                pool,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .await;
            (holders == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_reindexes_from_the_given_block() {
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 21)
        .await
        .expect("traffic");
    steps(&mut traffic, 30).await;
    let head = anvil.block_number().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &anvil.rpc_url(),
        &db.url,
        &contracts(&deployment),
        "",
    );
    let mut chainsync = Chainsync::run(&config);
    wait_indexed(&pool, head, Duration::from_secs(60)).await;
    let addresses = watched(&deployment, &traffic);
    assert_stored_equals_node(&anvil.rpc_url(), &pool, &addresses, (0, head), 1).await;

    let to = head - 10;
    let to_arg = to.to_string();
    let rewind_args = ["rewind", "--chain", "devnet", "--to", to_arg.as_str()];

    // While an instance indexes the chain, rewinding it is refused and changes nothing.
    let refused = chainsync_cli(&config, &rewind_args);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "rewind while running succeeded");
    assert!(
        stderr.contains("chain devnet") && stderr.contains("running"),
        "the refusal names the chain: {stderr}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM evm_logs WHERE removed").await,
        0
    );

    chainsync.kill9();
    wait_unlocked(&pool).await;
    let below_before = stored_logs(&pool, "devnet", 0, to - 1).await;
    let above_before = stored_logs(&pool, "devnet", to, LAST_BLOCK).await;
    assert!(
        !above_before.is_empty(),
        "no events above the rewind point: the test proves nothing"
    );

    let rewound = chainsync_cli(&config, &rewind_args);
    assert!(
        rewound.status.success(),
        "rewind failed: {}",
        String::from_utf8_lossy(&rewound.stderr)
    );
    assert!(String::from_utf8_lossy(&rewound.stdout).contains(&format!("rewound to block {to}")));

    // Everything from `to` on is marked removed (kept for audit); below it nothing changed.
    assert!(stored_logs(&pool, "devnet", to, LAST_BLOCK)
        .await
        .is_empty());
    let removed = count(&pool, "SELECT count(*) FROM evm_logs WHERE removed").await;
    assert_eq!(removed, above_before.len() as i64, "rows marked removed");
    assert_eq!(stored_logs(&pool, "devnet", 0, to - 1).await, below_before);
    // The configured contracts' cursors and the chain's indexed height moved back to `to - 1`.
    for address in [deployment.manager, deployment.producer_storage] {
        assert_eq!(
            cursor_of(&pool, &format!("{address:#x}")).await,
            Some(to as i64 - 1),
            "cursor of {address:#x}"
        );
    }
    assert_eq!(indexed_block(&pool, "devnet").await, Some(to - 1));

    // Restarted, chainsync indexes the same rows again: the node's logs, nothing left removed.
    let _chainsync = Chainsync::run(&config);
    wait_indexed(&pool, head, Duration::from_secs(60)).await;
    assert_stored_equals_node(&anvil.rpc_url(), &pool, &addresses, (0, head), 1).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM evm_logs WHERE removed").await,
        0,
        "re-indexed rows are live again"
    );
}

/// The hash of block 0 of `anvil`.
async fn genesis_hash(anvil: &Anvil) -> Value {
    let block = anvil
        .rpc("eth_getBlockByNumber", json!(["0x0", false]))
        .await
        .expect("genesis block");
    block["hash"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_another_chain_is_refused() {
    let anvil_a = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil_a.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil_a.rpc_url(), deployment.clone(), 4)
        .await
        .expect("traffic");
    steps(&mut traffic, 5).await;
    let head = anvil_a.block_number().await;
    let dir_a = tempfile::tempdir().expect("tempdir");
    let config_a = write_config(
        dir_a.path(),
        &anvil_a.rpc_url(),
        &db.url,
        &contracts(&deployment),
        "",
    );
    let mut chainsync = Chainsync::run(&config_a);
    wait_indexed(&pool, head, Duration::from_secs(60)).await;
    chainsync.kill9();
    let logs_before = count(&pool, "SELECT count(*) FROM evm_logs").await;
    let cursors_before = count(
        &pool,
        "SELECT coalesce(sum(indexed_to), 0)::bigint FROM contract_cursors",
    )
    .await;
    assert!(logs_before > 0);

    // Same chain id, another genesis block.
    let anvil_b = Anvil::start_with(&["--timestamp", "1600000000"]).await;
    assert_ne!(genesis_hash(&anvil_a).await, genesis_hash(&anvil_b).await);
    let dir_b = tempfile::tempdir().expect("tempdir");
    let config_b = write_config(
        dir_b.path(),
        &anvil_b.rpc_url(),
        &db.url,
        &contracts(&deployment),
        "",
    );
    let mut refused = Chainsync::run(&config_b);
    let status = wait_for(
        "chainsync to exit on another chain's node",
        Duration::from_secs(20),
        || {
            let exited = refused.child.try_wait().expect("try_wait");
            async move { exited }
        },
    )
    .await;
    assert!(!status.success(), "chainsync accepted another chain");
    let log = std::fs::read_to_string(&refused.log).expect("log");
    assert!(
        log.contains("identity mismatch") && log.contains("devnet"),
        "the exit names the identity mismatch: {log}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM evm_logs").await,
        logs_before
    );
    assert_eq!(
        count(
            &pool,
            "SELECT coalesce(sum(indexed_to), 0)::bigint FROM contract_cursors"
        )
        .await,
        cursors_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_added_later_backfills_while_the_others_stay_live() {
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 33)
        .await
        .expect("traffic");
    steps(&mut traffic, 20).await;
    // A long stretch of empty blocks: the added contract's backfill takes many small ranges.
    anvil.mine(600).await;
    steps(&mut traffic, 10).await;
    let head = anvil.block_number().await;

    let manager = format!("{:#x}", deployment.manager);
    let registry = format!("{:#x}", deployment.producer_storage);
    let manager_only = vec![("stream_lock_manager", manager.clone(), 0)];
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &anvil.rpc_url(), &db.url, &manager_only, "");
    let mut chainsync = Chainsync::run(&config);
    wait_indexed(&pool, head, Duration::from_secs(60)).await;
    assert_eq!(cursor_of(&pool, &registry).await, None);
    assert_stored_equals_node(
        &anvil.rpc_url(),
        &pool,
        std::slice::from_ref(&manager),
        (0, head),
        1,
    )
    .await;
    chainsync.kill9();
    wait_unlocked(&pool).await;

    let config = write_config(
        dir.path(),
        &anvil.rpc_url(),
        &db.url,
        &contracts(&deployment),
        "max_block_range = 3\nrequests_per_second = 50",
    );
    let _chainsync = Chainsync::run(&config);
    // New traffic on the manager is indexed while the registry still backfills far behind.
    steps(&mut traffic, 3).await;
    let live_head = anvil.block_number().await;
    let truth = node_logs(
        &anvil.rpc_url(),
        std::slice::from_ref(&manager),
        head + 1,
        live_head,
    )
    .await;
    assert!(!truth.is_empty(), "the live steps emitted no manager event");
    let (manager_at, registry_at) = wait_for(
        "live manager events stored while the registry backfills",
        Duration::from_secs(30),
        || async {
            let stored = stored_manager_logs(&pool, &deployment, head + 1, live_head).await;
            if stored != truth {
                return None;
            }
            Some((
                cursor_of(&pool, &manager).await,
                cursor_of(&pool, &registry).await,
            ))
        },
    )
    .await;
    println!("live manager events stored: manager at {manager_at:?}, registry at {registry_at:?}");
    let manager_at = manager_at.expect("manager cursor");
    assert!(manager_at >= live_head as i64);
    assert!(
        registry_at.is_none_or(|at| at < manager_at),
        "the registry's backfill was not behind the live manager"
    );

    // The registry catches up and joins the manager; every watched address equals the node.
    wait_for(
        "the registry to reach the manager",
        Duration::from_secs(180),
        || async {
            let manager_at = cursor_of(&pool, &manager).await?;
            (cursor_of(&pool, &registry).await == Some(manager_at)
                && manager_at >= live_head as i64)
                .then_some(())
        },
    )
    .await;
    wait_indexed(&pool, live_head, Duration::from_secs(120)).await;
    assert_stored_equals_node(
        &anvil.rpc_url(),
        &pool,
        &watched(&deployment, &traffic),
        (0, live_head),
        1,
    )
    .await;
}

/// Stored non-removed logs of the manager contract in `[from, to]`.
async fn stored_manager_logs(
    pool: &PgPool,
    deployment: &chainsync::devnet::Deployment,
    from: u64,
    to: u64,
) -> Vec<(String, String, u64)> {
    let rows: Vec<(Vec<u8>, Vec<u8>, i32)> = sqlx::query_as(
        "SELECT block_hash, tx_hash, log_index FROM evm_logs
         WHERE chain = 'devnet' AND NOT removed AND address = $1 AND block_number BETWEEN $2 AND $3",
    )
    .bind(deployment.manager.as_slice())
    .bind(from as i64)
    .bind(to as i64)
    .fetch_all(pool)
    .await
    .expect("stored manager logs");
    let mut out: Vec<(String, String, u64)> = rows
        .into_iter()
        .map(|(block, tx, index)| {
            (
                format!("0x{}", hex::encode(block)),
                format!("0x{}", hex::encode(tx)),
                index as u64,
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_deeper_than_the_window_halts_the_chain() {
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 8)
        .await
        .expect("traffic");
    steps(&mut traffic, 15).await;
    let head = anvil.block_number().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &anvil.rpc_url(),
        &db.url,
        &contracts(&deployment),
        "reorg_window = 4\nconfirmations = 1",
    );
    let chainsync = Chainsync::run(&config);
    wait_indexed(&pool, head, Duration::from_secs(60)).await;
    let stored_before = stored_logs(&pool, "devnet", 0, head).await;
    assert!(!stored_before.is_empty(), "nothing indexed before the fork");

    // Replace the last 8 blocks: the fork point lies below the 4 blocks the window holds.
    anvil
        .rpc("anvil_reorg", json!([8, []]))
        .await
        .expect("anvil_reorg");

    let reason: String = wait_for(
        "chain_status.halted_reason",
        Duration::from_secs(30),
        || async {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT halted_reason FROM chain_status WHERE chain = 'devnet'",
            )
            .fetch_one(&pool)
            .await
            .ok()
            .flatten()
        },
    )
    .await;
    assert!(reason.contains("reorg window"), "halted reason: {reason}");
    assert_eq!(
        metric_sum(&config, "chainsync_chain_halted", &["chain=\"devnet\""]).await,
        1.0
    );
    assert!(chainsync.logged("indexing halted"));
    // Nothing was guessed: no reorg recorded, no row marked removed, the old rows still there.
    assert_eq!(count(&pool, "SELECT count(*) FROM reorgs").await, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM evm_logs WHERE removed").await,
        0
    );
    assert_eq!(stored_logs(&pool, "devnet", 0, head).await, stored_before);
    // It stays halted (a few polls later still nothing moved), and stays ready: halting is an
    // alert for an operator, not a reason to take the instance out of service.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM evm_logs WHERE removed").await,
        0
    );
    let readyz = common::metrics_url(&config).replace("/metrics", "/readyz");
    let response = reqwest::get(&readyz).await.expect("readyz reachable");
    assert_eq!(response.status().as_u16(), 200, "/readyz of a halted chain");
}

// ---------------------------------------------------------------------------------------------
// A lagging node: an HTTP proxy in front of anvil that, while told to, answers the latest
// block with one a few blocks older.
// ---------------------------------------------------------------------------------------------

/// How many blocks the lagging node is behind.
const LAG: u64 = 5;

/// A node in front of anvil that can be made to lag (answer `latest` with an older block) or to
/// fail every call (an outage).
struct ScriptedRpc {
    addr: SocketAddr,
    lagging: Arc<AtomicBool>,
    outage: Arc<AtomicBool>,
    stale_answers: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedRpc {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let lagging = Arc::new(AtomicBool::new(false));
        let outage = Arc::new(AtomicBool::new(false));
        let stale_answers = Arc::new(AtomicU64::new(0));
        let proxy = Proxy {
            upstream,
            client: reqwest::Client::new(),
            lagging: lagging.clone(),
            outage: outage.clone(),
            stale_answers: stale_answers.clone(),
        };
        let proxy = Arc::new(proxy);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let proxy = proxy.clone();
                tokio::spawn(async move { proxy.serve(socket).await });
            }
        });
        Self {
            addr,
            lagging,
            outage,
            stale_answers,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_lagging(&self, lagging: bool) {
        self.lagging.store(lagging, Ordering::SeqCst);
    }

    fn set_outage(&self, outage: bool) {
        self.outage.store(outage, Ordering::SeqCst);
    }
}

impl Drop for ScriptedRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    lagging: Arc<AtomicBool>,
    outage: Arc<AtomicBool>,
    stale_answers: Arc<AtomicU64>,
}

impl Proxy {
    /// Serves HTTP/1.1 requests (bodies with a Content-Length) on one connection until it closes.
    async fn serve(&self, socket: TcpStream) {
        let mut reader = BufReader::new(socket);
        loop {
            let mut length = 0usize;
            let mut line = String::new();
            // Request line and headers, up to the empty line.
            loop {
                line.clear();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let header = line.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).await.is_err() {
                return;
            }
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let answer = match request {
                Value::Array(calls) => {
                    let mut answers = Vec::with_capacity(calls.len());
                    for call in calls {
                        answers.push(self.answer(call).await);
                    }
                    Value::Array(answers)
                }
                call => self.answer(call).await,
            };
            let body = answer.to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let socket = reader.get_mut();
            if socket.write_all(head.as_bytes()).await.is_err()
                || socket.write_all(body.as_bytes()).await.is_err()
            {
                return;
            }
        }
    }

    /// The answer to one JSON-RPC call: forwarded, except the latest block while lagging.
    async fn answer(&self, call: Value) -> Value {
        if self.outage.load(Ordering::SeqCst) {
            return json!({"jsonrpc": "2.0", "id": call["id"],
                "error": {"code": -32603, "message": "internal error"}});
        }
        let asks_latest = call["method"] == "eth_getBlockByNumber" && call["params"][0] == "latest";
        if self.lagging.load(Ordering::SeqCst) && asks_latest {
            let head = common::rpc(&self.upstream, "eth_blockNumber", json!([]))
                .await
                .ok()
                .and_then(|n| u64::from_str_radix(n.as_str()?.trim_start_matches("0x"), 16).ok());
            if let Some(head) = head {
                let older = format!("0x{:x}", head.saturating_sub(LAG));
                let block = common::rpc(
                    &self.upstream,
                    "eth_getBlockByNumber",
                    json!([older, call["params"][1]]),
                )
                .await;
                if let Ok(block) = block {
                    self.stale_answers.fetch_add(1, Ordering::SeqCst);
                    return json!({"jsonrpc": "2.0", "id": call["id"], "result": block});
                }
            }
        }
        let forwarded = self.client.post(&self.upstream).json(&call).send().await;
        match forwarded {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(err) => json!({"jsonrpc": "2.0", "id": call["id"],
                "error": {"code": -32603, "message": err.to_string()}}),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_is_not_a_reorg() {
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 55)
        .await
        .expect("traffic");
    steps(&mut traffic, 15).await;
    let head = anvil.block_number().await;
    let proxy = ScriptedRpc::start(anvil.rpc_url()).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &proxy.url(),
        &db.url,
        &contracts(&deployment),
        "",
    );
    let chainsync = Chainsync::run(&config);
    wait_indexed(&pool, head, Duration::from_secs(60)).await;
    let stored_before = stored_logs(&pool, "devnet", 0, head).await;

    // The node falls behind what chainsync already indexed.
    proxy.set_lagging(true);
    wait_for(
        "chainsync to see the lagging head",
        Duration::from_secs(20),
        || async {
            let seen =
                metric_sum(&config, "chainsync_chain_head_block", &["chain=\"devnet\""]).await;
            (seen == (head - LAG) as f64).then_some(())
        },
    )
    .await;
    // A few polls at the lagging head.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(proxy.stale_answers.load(Ordering::SeqCst) > 1);
    assert!(chainsync.logged("node head is below the indexed block; waiting"));
    assert_eq!(count(&pool, "SELECT count(*) FROM reorgs").await, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM evm_logs WHERE removed").await,
        0
    );
    assert_eq!(stored_logs(&pool, "devnet", 0, head).await, stored_before);
    assert_eq!(indexed_block(&pool, "devnet").await, Some(head));

    // The node catches up: indexing goes on and still equals the node.
    proxy.set_lagging(false);
    steps(&mut traffic, 5).await;
    let new_head = anvil.block_number().await;
    wait_indexed(&pool, new_head, Duration::from_secs(30)).await;
    assert_stored_equals_node(
        &anvil.rpc_url(),
        &pool,
        &watched(&deployment, &traffic),
        (0, new_head),
        1,
    )
    .await;
    assert_eq!(count(&pool, "SELECT count(*) FROM reorgs").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_heads_over_websocket_wake_the_listener() {
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 66)
        .await
        .expect("traffic");
    steps(&mut traffic, 10).await;
    let head = anvil.block_number().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("poll_interval = \"30s\"\nws_url = \"{}\"", anvil.ws_url());
    let config = write_config(
        dir.path(),
        &anvil.rpc_url(),
        &db.url,
        &contracts(&deployment),
        &extra,
    );
    let chainsync = Chainsync::run(&config);
    wait_indexed(&pool, head, Duration::from_secs(60)).await;
    wait_for("the head subscription", Duration::from_secs(20), || async {
        chainsync.logged("subscribed to new heads").then_some(())
    })
    .await;
    // Let the listener settle into its 30 s wait.
    tokio::time::sleep(Duration::from_secs(1)).await;

    steps(&mut traffic, 1).await;
    let mined = Instant::now();
    let new_head = anvil.block_number().await;
    let truth = node_logs(
        &anvil.rpc_url(),
        &watched(&deployment, &traffic),
        head + 1,
        new_head,
    )
    .await;
    assert!(!truth.is_empty(), "the traffic step emitted no event");
    wait_for(
        "the new event, well before the next poll",
        Duration::from_secs(5),
        || async {
            let stored = stored_logs(&pool, "devnet", head + 1, new_head).await;
            (stored == truth).then_some(())
        },
    )
    .await;
    println!("new event stored {:?} after it was mined", mined.elapsed());
    assert!(mined.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_repeated_rpc_failure_the_listener_restarts_from_its_cursor() {
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 31)
        .await
        .expect("traffic");
    steps(&mut traffic, 10).await;
    let node = ScriptedRpc::start(anvil.rpc_url()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &node.url(),
        &db.url,
        &contracts(&deployment),
        "",
    );
    let chainsync = Chainsync::run(&config);
    wait_indexed(&pool, anvil.block_number().await, Duration::from_secs(60)).await;

    // Every call fails until the listener has used up its retries and been restarted.
    node.set_outage(true);
    steps(&mut traffic, 5).await;
    wait_for("a listener restart", Duration::from_secs(90), || async {
        let restarts = metric_sum(
            &config,
            "chainsync_actor_restarts_total",
            &["actor=\"evm_listener\""],
        )
        .await;
        (restarts >= 1.0).then_some(())
    })
    .await;
    assert!(chainsync.logged("restarting from the persisted cursor"));
    node.set_outage(false);

    steps(&mut traffic, 5).await;
    let head = anvil.block_number().await;
    wait_indexed(&pool, head, Duration::from_secs(60)).await;
    assert_stored_equals_node(
        &anvil.rpc_url(),
        &pool,
        &watched(&deployment, &traffic),
        (0, head),
        1,
    )
    .await;
}
