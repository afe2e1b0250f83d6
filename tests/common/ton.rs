//! The loopback TON liteserver (`chainsync devnet ton-liteserver`) as a child process, and the
//! configuration pieces that point chainsync at it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, repo_root};

/// The devnet liteserver key (seed 0x2a * 32), as in `config/ton-devnet.json`.
pub const DEVNET_PUBLIC_KEY: &str = "GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE=";
/// The account of the 16-transaction mainnet chain in `tests/fixtures/ton/mainnet`.
pub const MAINNET_CHAIN_ACCOUNT: &str =
    "0:e2d41ed396a9f1ba03839d63c5650fafc6fcfb574fd03f2e67d6555b61a3acd9";

/// A running test liteserver, killed on drop.
pub struct Liteserver {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Liteserver {
    /// Starts a liteserver with `args` appended (e.g. `["--block-interval", "300ms"]`) and waits
    /// until it accepts connections.
    pub fn start(args: &[&str]) -> Self {
        let dir = repo_root().join("target/test-logs");
        let _ = std::fs::create_dir_all(&dir);
        for _attempt in 0..5 {
            let port = free_port();
            let log = dir.join(format!("liteserver-{}-{port}.log", std::process::id()));
            let child = Command::new(env!("CARGO_BIN_EXE_chainsync"))
                .args(["devnet", "ton-liteserver", "--listen"])
                .arg(format!("127.0.0.1:{port}"))
                .args(args)
                .current_dir(repo_root())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .expect("liteserver starts");
            let mut server = Self { child, port, log };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                if let Ok(Some(_)) = server.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            server.kill();
        }
        panic!("test liteserver did not start; see target/test-logs/liteserver-*.log");
    }

    /// SIGKILL: open connections drop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Liteserver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `global.config.json` document listing liteservers on 127.0.0.1 at `ports`, in order.
pub fn global_config(ports: &[u16]) -> String {
    let servers: Vec<serde_json::Value> = ports
        .iter()
        .map(|port| {
            serde_json::json!({
                "ip": 2130706433,
                "port": port,
                "id": {"@type": "pub.ed25519", "key": DEVNET_PUBLIC_KEY}
            })
        })
        .collect();
    let zero = serde_json::json!({
        "workchain": -1, "shard": -9223372036854775808i64, "seqno": 0,
        "root_hash": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "file_hash": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    });
    serde_json::json!({
        "@type": "config.global",
        "dht": {"@type": "dht.config.global", "k": 6, "a": 3,
                "static_nodes": {"@type": "dht.nodes", "nodes": []}},
        "liteservers": servers,
        "validator": {"@type": "validator.config.global", "zero_state": zero,
                      "init_block": zero, "hardforks": []}
    })
    .to_string()
}

/// Milliseconds since the Unix epoch (for `--genesis-unix-ms`).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One `[[ton.accounts]]` entry: role, address and extra `key = value` lines.
pub struct Account<'a> {
    pub role: &'a str,
    pub address: String,
    pub extra: String,
}

/// Writes a configuration with one TON network `ton-test` (network `devnet`) on liteservers at
/// `ports` and the given accounts; `network_extra` holds `key = value` lines for the `[[ton]]`
/// table (confirmations, poll_interval, stuck_after...).
pub fn write_ton_config(
    dir: &std::path::Path,
    db_url: &str,
    ports: &[u16],
    network_extra: &str,
    accounts: &[Account<'_>],
) -> PathBuf {
    let liteservers = dir.join("liteservers.json");
    std::fs::write(&liteservers, global_config(ports)).expect("write liteservers");
    let api_port = free_port();
    let metrics_port = free_port();
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

[[ton]]
name = "ton-test"
network = "devnet"
liteservers = "{}"
request_timeout = "2s"
{network_extra}
"#,
        liteservers.display()
    );
    for account in accounts {
        text.push_str(&format!(
            "\n[[ton.accounts]]\nrole = \"{}\"\naddress = \"{}\"\n{}\n",
            account.role, account.address, account.extra
        ));
    }
    let path = dir.join("chainsync.toml");
    std::fs::write(&path, text).expect("write test config");
    path
}

/// A sandbox scenario file of `tests/fixtures/ton/sandbox`.
pub fn scenario(name: &str) -> serde_json::Value {
    let path = repo_root().join(format!("tests/fixtures/ton/sandbox/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("scenario readable"))
        .expect("scenario parses")
}

/// The address labelled `label` in a scenario.
pub fn scenario_account(scenario: &serde_json::Value, label: &str) -> String {
    scenario["accounts"][label]
        .as_str()
        .unwrap_or_else(|| panic!("scenario has no account {label}"))
        .to_owned()
}
