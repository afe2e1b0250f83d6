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

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free TCP port on 127.0.0.1 (released before returning; the caller binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
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
                if rpc(&url, "eth_chainId", serde_json::json!([])).await.is_ok() {
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
    Ok(value.get("result").cloned().unwrap_or(serde_json::Value::Null))
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
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
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
        assert!(Instant::now() < until, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
