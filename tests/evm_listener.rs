//! The EVM listener end to end: real anvil, real PostgreSQL, the real `chainsync` binary.
//!
//! Each test compares what chainsync stored with the node's own `eth_getLogs` (ground truth),
//! row for row.

mod common;

use std::time::Duration;

use chainsync::devnet::{deploy, Traffic};
use common::{
    assert_stored_equals_node, contracts, metric_sum, node_logs, stored_logs, wait_for,
    wait_indexed, watched, write_config, Anvil, Chainsync, TestDb,
};
use sqlx::PgPool;

/// Runs `n` traffic steps as fast as the node mines them.
async fn steps(traffic: &mut Traffic, n: u64) -> chainsync::devnet::Result<u64> {
    traffic
        .run_steps(1000.0, Some(n), std::future::pending())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_of_ten_thousand_events_equals_the_node_then_follows_live() {
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 11)
        .await
        .expect("traffic");
    traffic.flood(10_000).await.expect("flood");
    let head = anvil.block_number().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &anvil.rpc_url(),
        &db.url,
        &contracts(&deployment),
        "",
    );
    let _chainsync = Chainsync::run(&config);
    wait_indexed(&pool, head, Duration::from_secs(240)).await;

    let addresses = watched(&deployment, &traffic);
    assert_stored_equals_node(&anvil.rpc_url(), &pool, &addresses, (0, head), 10_000).await;

    // Live: a new event is stored within two poll intervals plus ten seconds.
    let started = std::time::Instant::now();
    steps(&mut traffic, 3).await.expect("traffic steps");
    let new_head = anvil.block_number().await;
    let addresses = watched(&deployment, &traffic);
    let truth = node_logs(&anvil.rpc_url(), &addresses, head + 1, new_head).await;
    assert!(!truth.is_empty(), "the live steps emitted no event");
    let deadline = Duration::from_millis(2 * 200) + Duration::from_secs(10);
    wait_for("live events stored", deadline, || async {
        let stored = stored_logs(&pool, "devnet", head + 1, new_head).await;
        (stored == truth).then_some(())
    })
    .await;
    println!(
        "live events stored {:?} after the transactions",
        started.elapsed()
    );

    // `chainsync verify` agrees (exit 0), and fails (exit 1) once a row goes missing.
    let verify = |to: u64| {
        std::process::Command::new(env!("CARGO_BIN_EXE_chainsync"))
            .args([
                "verify",
                "--chain",
                "devnet",
                "--from",
                "0",
                "--to",
                &to.to_string(),
                "--config",
            ])
            .arg(&config)
            .current_dir(common::repo_root())
            .env_remove("DATABASE_URL")
            .output()
            .expect("verify runs")
    };
    let output = verify(new_head);
    assert!(
        output.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    sqlx::query("DELETE FROM evm_logs WHERE ctid IN (SELECT ctid FROM evm_logs WHERE chain = 'devnet' AND NOT removed LIMIT 1)")
        .execute(&pool)
        .await
        .expect("delete one row");
    let output = verify(new_head);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("missing 1"));
}

/// Replaces the last `depth` blocks with empty ones (or with `txs`), then mines `extra` blocks.
async fn reorg(anvil: &Anvil, depth: u64, txs: serde_json::Value) {
    anvil
        .rpc("anvil_reorg", serde_json::json!([depth, txs]))
        .await
        .expect("anvil_reorg");
}

async fn assert_matches_node(anvil: &Anvil, pool: &PgPool, addresses: &[String]) {
    let head = anvil.block_number().await;
    wait_indexed(pool, head, Duration::from_secs(60)).await;
    // The listener may still be one step behind the reorg: wait until the rows agree.
    let truth = node_logs(&anvil.rpc_url(), addresses, 0, head).await;
    wait_for(
        "stored logs equal the canonical chain",
        Duration::from_secs(30),
        || async {
            let stored = stored_logs(pool, "devnet", 0, head).await;
            (stored == truth).then_some(())
        },
    )
    .await;
}

async fn last_reorg_depth(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT depth FROM reorgs WHERE chain = 'devnet' ORDER BY id DESC LIMIT 1")
        .fetch_one(pool)
        .await
        .expect("a reorg row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_leave_exactly_the_canonical_logs_and_record_their_depth() {
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 5)
        .await
        .expect("traffic");
    steps(&mut traffic, 40).await.expect("traffic");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &anvil.rpc_url(),
        &db.url,
        &contracts(&deployment),
        "",
    );
    let mut chainsync = Chainsync::run(&config);
    assert_matches_node(&anvil, &pool, &watched(&deployment, &traffic)).await;

    let mut depth_sum = 0.0;
    for depth in [1u64, 5, 30] {
        // Make sure the blocks about to be replaced hold events.
        steps(&mut traffic, depth + 2).await.expect("traffic");
        let head = anvil.block_number().await;
        wait_indexed(&pool, head, Duration::from_secs(60)).await;
        let before = stored_logs(&pool, "devnet", head + 1 - depth, head).await;
        assert!(!before.is_empty(), "the blocks to replace hold no events");
        reorg(&anvil, depth, serde_json::json!([])).await;
        anvil.mine(1).await;
        // The replaced blocks took the generator's transactions (and nonces) with them.
        traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 100 + depth)
            .await
            .expect("traffic");
        assert_matches_node(&anvil, &pool, &watched(&deployment, &traffic)).await;
        assert_eq!(last_reorg_depth(&pool).await, depth as i64);
        depth_sum += depth as f64;
        let recorded = metric_sum(
            &config,
            "chainsync_reorg_depth_blocks_sum",
            &["chain=\"devnet\""],
        )
        .await;
        assert_eq!(recorded, depth_sum, "reorg depth metric");
        // The replaced events are kept, marked removed.
        let removed: i64 = sqlx::query_scalar("SELECT count(*) FROM evm_logs WHERE removed")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert!(removed >= before.len() as i64);
    }

    // A reorg while chainsync is stopped is found at restart.
    steps(&mut traffic, 8).await.expect("traffic");
    let head = anvil.block_number().await;
    wait_indexed(&pool, head, Duration::from_secs(60)).await;
    chainsync.kill9();
    reorg(&anvil, 5, serde_json::json!([])).await;
    anvil.mine(2).await;
    let _chainsync = Chainsync::run(&config);
    assert_matches_node(&anvil, &pool, &watched(&deployment, &traffic)).await;
    assert_eq!(last_reorg_depth(&pool).await, 5);
    traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 200)
        .await
        .expect("traffic");

    // A transaction moved to another block by a reorg: stored once, in its new block.
    steps(&mut traffic, 4).await.expect("traffic");
    let head = anvil.block_number().await;
    wait_indexed(&pool, head, Duration::from_secs(60)).await;
    let block = anvil
        .rpc(
            "eth_getBlockByNumber",
            serde_json::json!([format!("0x{:x}", head - 2), false]),
        )
        .await
        .expect("block");
    let tx_hash = block["transactions"][0]
        .as_str()
        .expect("a transaction")
        .to_owned();
    let raw = anvil
        .rpc("eth_getRawTransactionByHash", serde_json::json!([tx_hash]))
        .await
        .expect("raw tx");
    reorg(&anvil, 3, serde_json::json!([[raw, 2]])).await;
    anvil.mine(1).await;
    let receipt = anvil
        .rpc("eth_getTransactionReceipt", serde_json::json!([tx_hash]))
        .await
        .expect("receipt");
    assert_eq!(
        receipt["blockNumber"].as_str(),
        Some(format!("0x{head:x}").as_str()),
        "moved to the new tip"
    );
    assert_matches_node(&anvil, &pool, &watched(&deployment, &traffic)).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(DISTINCT block_number) FROM evm_logs WHERE NOT removed AND tx_hash = decode($1, 'hex')")
        .bind(tx_hash.trim_start_matches("0x"))
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        rows, 1,
        "the moved transaction's logs live in exactly one block"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_when_the_active_instance_dies() {
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 3)
        .await
        .expect("traffic");
    steps(&mut traffic, 30).await.expect("traffic");

    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let config_a = write_config(
        dir_a.path(),
        &anvil.rpc_url(),
        &db.url,
        &contracts(&deployment),
        "",
    );
    let config_b = write_config(
        dir_b.path(),
        &anvil.rpc_url(),
        &db.url,
        &contracts(&deployment),
        "",
    );
    let mut active = Chainsync::run(&config_a);
    assert_matches_node(&anvil, &pool, &watched(&deployment, &traffic)).await;
    let standby = Chainsync::run(&config_b);
    wait_for(
        "the second instance to wait as standby",
        Duration::from_secs(30),
        || async { standby.logged("waiting as hot standby").then_some(()) },
    )
    .await;
    // Exactly one instance holds the chain's lock while both run.
    let holders: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&pool)
    .await
    .expect("pg_locks");
    assert_eq!(holders, 1, "one active writer");

    active.kill9();
    let killed_at = std::time::Instant::now();
    steps(&mut traffic, 10).await.expect("traffic");
    let head = anvil.block_number().await;
    wait_indexed(&pool, head, Duration::from_secs(30)).await;
    println!(
        "standby caught up {:?} after the active instance died",
        killed_at.elapsed()
    );
    assert_matches_node(&anvil, &pool, &watched(&deployment, &traffic)).await;
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT tx_hash, log_index FROM evm_logs WHERE NOT removed GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(duplicates, 0);
    assert!(standby.logged("took over as the active writer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_past_a_dead_endpoint_without_leaking_its_key() {
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 9)
        .await
        .expect("traffic");
    steps(&mut traffic, 10).await.expect("traffic");
    let head = anvil.block_number().await;

    // The first endpoint refuses connections and carries a key in its path; the second works.
    let secret = "k3y-THAT-must-never-be-logged";
    let dead = format!("http://127.0.0.1:{}/v2/{secret}", common::free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &dead, &db.url, &contracts(&deployment), "");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(
        &format!("rpc_urls = [\"{dead}\"]"),
        &format!("rpc_urls = [\"{dead}\", \"{}\"]", anvil.rpc_url()),
    );
    std::fs::write(&config, text).expect("config");

    let chainsync = Chainsync::run(&config);
    wait_indexed(&pool, head, Duration::from_secs(60)).await;
    assert_stored_equals_node(
        &anvil.rpc_url(),
        &pool,
        &watched(&deployment, &traffic),
        (0, head),
        1,
    )
    .await;
    let transport_errors = metric_sum(
        &config,
        "chainsync_rpc_requests_total",
        &["chain=\"devnet\"", "outcome=\"transport\""],
    )
    .await;
    assert!(transport_errors > 0.0, "the dead endpoint was never tried");
    let metrics = reqwest::get(common::metrics_url(&config))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(!metrics.contains(secret), "the key leaked into /metrics");
    let log = std::fs::read_to_string(&chainsync.log).expect("log");
    assert!(
        log.contains("http://127.0.0.1"),
        "the log names endpoints (redacted)"
    );
    assert!(!log.contains(secret), "the key leaked into the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topics_are_kept_admin_events_counted_and_empty_blocks_cost_no_get_logs() {
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 21)
        .await
        .expect("traffic");
    // The warm-up of the generator pauses, unpauses and (within its first steps) upgrades.
    steps(&mut traffic, 80).await.expect("traffic");
    let head = anvil.block_number().await;

    // The ERC-20 is watched too: its Transfer and Approval events are not in the ABI.
    let mut watched_contracts = contracts(&deployment);
    watched_contracts.push(("token", format!("{:#x}", deployment.token), 0));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &anvil.rpc_url(),
        &db.url,
        &watched_contracts,
        "",
    );
    let _chainsync = Chainsync::run(&config);
    wait_indexed(&pool, head, Duration::from_secs(60)).await;
    let mut addresses = watched(&deployment, &traffic);
    addresses.push(format!("{:#x}", deployment.token));
    assert_stored_equals_node(&anvil.rpc_url(), &pool, &addresses, (0, head), 1).await;

    let unknown: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM evm_logs WHERE decode_status = 'unknown' AND event IS NULL AND decoded IS NULL",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert!(unknown > 0, "the token's logs are stored raw");
    let counted = metric_sum(
        &config,
        "chainsync_events_total",
        &[
            "chain=\"devnet\"",
            "contract=\"token\"",
            "event=\"unknown\"",
        ],
    )
    .await;
    assert_eq!(counted, unknown as f64, "unknown logs are counted");
    for event in ["Upgraded", "Paused", "Unpaused"] {
        let label = format!("event=\"{event}\"");
        let seen = metric_sum(
            &config,
            "chainsync_admin_events_total",
            &["chain=\"devnet\"", &label],
        )
        .await;
        assert!(seen >= 1.0, "admin event {event} counted");
    }

    // Empty blocks: the blooms rule every watched address out, so no eth_getLogs is sent.
    let get_logs = |config: std::path::PathBuf| async move {
        metric_sum(
            &config,
            "chainsync_rpc_requests_total",
            &["chain=\"devnet\"", "method=\"eth_getLogs\""],
        )
        .await
    };
    let before = get_logs(config.clone()).await;
    anvil.mine(20).await;
    wait_indexed(&pool, head + 20, Duration::from_secs(30)).await;
    assert_eq!(
        get_logs(config.clone()).await,
        before,
        "eth_getLogs sent for empty blocks"
    );
}
