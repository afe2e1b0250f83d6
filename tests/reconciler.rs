//! The reconciler end to end: transfers confirmed exactly at the threshold (depth and finalized
//! tag), watched transactions (revert reason, stuck then mined, replaced), a stalled head that
//! blames no transfer, overdue streams, reorgs below and beyond the threshold, and projections
//! equal to the contract's own state (`getTokenLock`, `getBalanceSummary`) with the drift
//! reported. Real anvil, real PostgreSQL, the real `chainsync` binary.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, U256};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use bigdecimal::BigDecimal;
use chainsync::devnet::bindings::StreamLockManager;
use chainsync::devnet::{accounts, deploy, Deployment, Traffic};
use chainsync_actors::contracts::{getBalanceSummaryCall, getTokenLockCall};
use common::{
    contracts, metric_sum, rpc, wait_for, wait_indexed, write_config, Anvil, Chainsync, TestDb,
};
use serde_json::{json, Value};
use sqlx::{PgPool, Row};

/// A chain set up for one test: anvil with the contracts, a database, chainsync running.
struct Setup {
    anvil: Anvil,
    _db: TestDb,
    pool: PgPool,
    deployment: Deployment,
    _dir: tempfile::TempDir,
    config: PathBuf,
    chainsync: Chainsync,
}

async fn setup(anvil_args: &[&str], extra: &str) -> Setup {
    let anvil = Anvil::start_with(anvil_args).await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &anvil.rpc_url(),
        &db.url,
        &contracts(&deployment),
        extra,
    );
    let chainsync = Chainsync::run(&config);
    Setup {
        anvil,
        _db: db,
        pool,
        deployment,
        _dir: dir,
        config,
        chainsync,
    }
}

fn hex_of(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// `eth_sendTransaction` from an unlocked dev account; returns the hash once mined.
async fn send(anvil: &Anvil, from: Address, to: Address, input: Vec<u8>, gas: Option<u64>) -> B256 {
    let mut tx =
        json!({"from": format!("{from:#x}"), "to": format!("{to:#x}"), "data": hex_of(&input)});
    if let Some(gas) = gas {
        tx["gas"] = json!(format!("0x{gas:x}"));
    }
    let hash: Value = anvil
        .rpc("eth_sendTransaction", json!([tx]))
        .await
        .expect("send transaction");
    let hash: B256 = hash.as_str().expect("hash").parse().expect("hash");
    wait_receipt(anvil, hash).await;
    hash
}

async fn wait_receipt(anvil: &Anvil, hash: B256) -> Value {
    wait_for("a receipt", Duration::from_secs(20), || async {
        anvil
            .rpc("eth_getTransactionReceipt", json!([format!("{hash:#x}")]))
            .await
            .ok()
            .filter(|r| !r.is_null())
    })
    .await
}

fn block_of(receipt: &Value) -> u64 {
    u64::from_str_radix(
        receipt["blockNumber"]
            .as_str()
            .expect("block number")
            .trim_start_matches("0x"),
        16,
    )
    .expect("hex block number")
}

/// Creates a stream from customer account #4 towards account #1; returns (tx hash, block).
async fn create_stream(
    anvil: &Anvil,
    deployment: &Deployment,
    amount: u64,
    duration: u64,
) -> (B256, u64) {
    let customer = accounts::dev_addresses()[4];
    let recipient = accounts::dev_addresses()[1];
    let call = StreamLockManager::createStreamLockCall {
        recipient,
        token: deployment.token,
        totalAmount: U256::from(amount),
        duration: U256::from(duration),
    };
    let hash = send(anvil, customer, deployment.manager, call.abi_encode(), None).await;
    let receipt = wait_receipt(anvil, hash).await;
    (hash, block_of(&receipt))
}

/// A signed transaction (account `index` sends 1 wei to itself at `nonce`) that is not broadcast:
/// its hash is known before it is mined.
async fn signed_transfer(index: usize, nonce: u64, value: u64) -> (B256, Vec<u8>) {
    let signer = accounts::dev_signers()[index].clone();
    let address = signer.address();
    let wallet = EthereumWallet::from(signer);
    let request = TransactionRequest::default()
        .with_from(address)
        .with_to(address)
        .with_value(U256::from(value))
        .with_nonce(nonce)
        .with_chain_id(31337)
        .with_gas_limit(21_000)
        .with_max_fee_per_gas(100_000_000_000)
        .with_max_priority_fee_per_gas(1_000_000_000);
    let envelope = request.build(&wallet).await.expect("sign");
    let hash = *envelope.tx_hash();
    let raw = alloy::eips::eip2718::Encodable2718::encoded_2718(&envelope);
    (hash, raw)
}

async fn nonce_of(anvil: &Anvil, address: Address) -> u64 {
    let value = anvil
        .rpc(
            "eth_getTransactionCount",
            json!([format!("{address:#x}"), "latest"]),
        )
        .await
        .expect("nonce");
    u64::from_str_radix(value.as_str().expect("hex").trim_start_matches("0x"), 16).expect("nonce")
}

fn chainsync_watch(config: &Path, args: &[&str]) -> std::process::Output {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chainsync"))
        .arg("watch")
        .args(["--chain", "devnet"])
        .args(args)
        .arg("--config")
        .arg(config)
        .current_dir(common::repo_root())
        .env_remove("DATABASE_URL")
        .output()
        .expect("chainsync watch runs");
    assert!(
        output.status.success(),
        "chainsync watch failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// (status, stuck, failure reason, block) of one transfer.
type TransferRow = (String, bool, Option<String>, Option<i64>);

async fn transfer(pool: &PgPool, kind: &str, identity: &str) -> Option<TransferRow> {
    sqlx::query(
        "SELECT status, stuck, failure_reason, block_number FROM transfers
         WHERE chain = 'devnet' AND kind = $1 AND identity = $2",
    )
    .bind(kind)
    .bind(identity)
    .fetch_optional(pool)
    .await
    .expect("transfer row")
    .map(|r| {
        (
            r.get("status"),
            r.get("stuck"),
            r.get("failure_reason"),
            r.get("block_number"),
        )
    })
}

async fn wait_status(
    pool: &PgPool,
    kind: &str,
    identity: &str,
    status: &str,
    deadline: Duration,
) -> TransferRow {
    wait_for(
        &format!("{kind} {identity} to be {status}"),
        deadline,
        || async {
            transfer(pool, kind, identity)
                .await
                .filter(|t| t.0 == status)
        },
    )
    .await
}

/// (from, to, stuck, reason, block) of a transfer's history, in order.
async fn history(
    pool: &PgPool,
    kind: &str,
    identity: &str,
) -> Vec<(Option<String>, String, bool, String, Option<i64>)> {
    sqlx::query(
        "SELECT h.from_status, h.to_status, h.stuck, h.reason, h.block_number
         FROM transfer_history h JOIN transfers t ON t.chain = h.chain AND t.id = h.transfer_id
         WHERE t.chain = 'devnet' AND t.kind = $1 AND t.identity = $2 ORDER BY h.seq",
    )
    .bind(kind)
    .bind(identity)
    .fetch_all(pool)
    .await
    .expect("history")
    .into_iter()
    .map(|r| {
        (
            r.get("from_status"),
            r.get("to_status"),
            r.get("stuck"),
            r.get("reason"),
            r.get("block_number"),
        )
    })
    .collect()
}

async fn scalar_i64(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn eth_call(anvil: &Anvil, to: Address, input: Vec<u8>, block: &str) -> Vec<u8> {
    let value = anvil
        .rpc(
            "eth_call",
            json!([{"to": format!("{to:#x}"), "data": hex_of(&input)}, block]),
        )
        .await
        .expect("eth_call");
    hex::decode(value.as_str().expect("hex").trim_start_matches("0x")).expect("hex")
}

async fn block_timestamp(anvil: &Anvil, number: u64) -> u64 {
    let block = anvil
        .rpc(
            "eth_getBlockByNumber",
            json!([format!("0x{number:x}"), false]),
        )
        .await
        .expect("eth_getBlockByNumber");
    let hex = block["timestamp"].as_str().expect("timestamp");
    u64::from_str_radix(hex.trim_start_matches("0x"), 16).expect("hex timestamp")
}

fn decimal(value: U256) -> BigDecimal {
    value.to_string().parse().expect("decimal")
}

/// Every non-superseded `streams` row equals `getTokenLock` at `block`; returns how many rows.
async fn assert_streams_equal_contract(anvil: &Anvil, pool: &PgPool, block: u64) -> usize {
    let rows = sqlx::query(
        "SELECT manager, lock_id, user_address, recipient, token, total_amount, stream_rate, stream_type,
                usage_count, used_count, extract(epoch FROM start_time)::bigint AS start_time,
                extract(epoch FROM end_time)::bigint AS end_time, status
         FROM streams WHERE chain = 'devnet' AND status <> 'superseded'",
    )
    .fetch_all(pool)
    .await
    .expect("streams");
    let at = format!("0x{block:x}");
    for row in &rows {
        let lock_id: Vec<u8> = row.get("lock_id");
        let manager: Vec<u8> = row.get("manager");
        let answer = eth_call(
            anvil,
            Address::from_slice(&manager),
            getTokenLockCall {
                lockId: B256::from_slice(&lock_id),
            }
            .abi_encode(),
            &at,
        )
        .await;
        let lock = getTokenLockCall::abi_decode_returns(&answer).expect("TokenLock");
        let what = hex_of(&lock_id);
        assert_eq!(
            row.get::<Vec<u8>, _>("user_address"),
            lock.user.to_vec(),
            "user of {what}"
        );
        assert_eq!(
            row.get::<Vec<u8>, _>("recipient"),
            lock.recipient.to_vec(),
            "recipient of {what}"
        );
        assert_eq!(
            row.get::<Vec<u8>, _>("token"),
            lock.token.to_vec(),
            "token of {what}"
        );
        assert_eq!(
            row.get::<BigDecimal, _>("total_amount"),
            decimal(lock.totalAmount),
            "total of {what}"
        );
        assert_eq!(
            row.get::<Option<BigDecimal>, _>("stream_rate"),
            Some(decimal(lock.streamRate)),
            "rate of {what}"
        );
        assert_eq!(
            row.get::<Option<i16>, _>("stream_type"),
            Some(i16::from(lock.streamType)),
            "type of {what}"
        );
        assert_eq!(
            row.get::<Option<BigDecimal>, _>("usage_count"),
            Some(decimal(lock.usageCount)),
            "usages of {what}"
        );
        assert_eq!(
            row.get::<BigDecimal, _>("used_count"),
            decimal(lock.usedCount),
            "used of {what}"
        );
        assert_eq!(
            U256::from(row.get::<i64, _>("start_time")),
            lock.startTime,
            "start of {what}"
        );
        assert_eq!(
            U256::from(row.get::<i64, _>("end_time")),
            lock.endTime,
            "end of {what}"
        );
        let status: String = row.get("status");
        assert_eq!(
            status == "active",
            lock.isActive,
            "{what} is {status}, contract isActive = {}",
            lock.isActive
        );
    }
    rows.len()
}

/// Every `virtual_balances` row equals `getBalanceSummary` at `block`; returns how many rows.
async fn assert_balances_equal_contract(anvil: &Anvil, pool: &PgPool, block: u64) -> usize {
    let rows = sqlx::query(
        "SELECT manager, user_address, token, total, locked FROM virtual_balances WHERE chain = 'devnet'",
    )
    .fetch_all(pool)
    .await
    .expect("balances");
    let at = format!("0x{block:x}");
    for row in &rows {
        let manager: Vec<u8> = row.get("manager");
        let user: Vec<u8> = row.get("user_address");
        let token: Vec<u8> = row.get("token");
        let answer = eth_call(
            anvil,
            Address::from_slice(&manager),
            getBalanceSummaryCall {
                user: Address::from_slice(&user),
                token: Address::from_slice(&token),
            }
            .abi_encode(),
            &at,
        )
        .await;
        let summary = getBalanceSummaryCall::abi_decode_returns(&answer).expect("summary");
        assert_eq!(
            row.get::<BigDecimal, _>("total"),
            decimal(summary.total),
            "total of {}",
            hex_of(&user)
        );
        assert_eq!(
            row.get::<BigDecimal, _>("locked"),
            decimal(summary.locked),
            "locked of {}",
            hex_of(&user)
        );
    }
    rows.len()
}

async fn confirmed_block(pool: &PgPool) -> Option<i64> {
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT confirmed_block FROM chain_status WHERE chain = 'devnet'",
    )
    .fetch_optional(pool)
    .await
    .expect("chain status")
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_projections_equal_the_contracts_and_views_read_them() {
    let s = setup(&[], "confirmations = 2\ndrift_check_interval = \"1s\"\n").await;
    let mut traffic = Traffic::new(&s.anvil.rpc_url(), s.deployment.clone(), 4242)
        .await
        .expect("traffic");
    traffic
        .run_steps(1000.0, Some(220), std::future::pending())
        .await
        .expect("traffic steps");
    s.anvil.mine(2).await;
    let head = s.anvil.block_number().await;
    wait_indexed(&s.pool, head, Duration::from_secs(120)).await;
    let confirmed = head - 1;
    wait_for("confirmed height", Duration::from_secs(30), || async {
        confirmed_block(&s.pool)
            .await
            .filter(|c| *c as u64 >= confirmed)
    })
    .await;

    // Every operation produced rows.
    for kind in [
        "stream_lock_created",
        "stream_settled",
        "partial_claim",
        "emergency_withdraw",
        "balance_withdrawn",
    ] {
        let n = scalar_i64(
            &s.pool,
            &format!("SELECT count(*) FROM transfers WHERE kind = '{kind}'"),
        )
        .await;
        assert!(n > 0, "no {kind} transfers after the traffic run");
    }
    // One transfer per log of its event, all confirmed (nothing is deeper than the head - 1).
    let mismatched = scalar_i64(
        &s.pool,
        "SELECT count(*) FROM (
            SELECT event, count(*) AS n FROM evm_logs WHERE NOT removed AND event IN
              ('StreamLockCreated', 'StreamSettled', 'PartialClaim', 'EmergencyWithdraw', 'BalanceWithdrawn') GROUP BY event) l
         FULL JOIN (SELECT kind, count(*) AS n FROM transfers GROUP BY kind) t
           ON t.kind = CASE l.event WHEN 'StreamLockCreated' THEN 'stream_lock_created' WHEN 'StreamSettled' THEN 'stream_settled'
                      WHEN 'PartialClaim' THEN 'partial_claim' WHEN 'EmergencyWithdraw' THEN 'emergency_withdraw'
                      ELSE 'balance_withdrawn' END
         WHERE l.n IS DISTINCT FROM t.n",
    )
    .await;
    assert_eq!(
        mismatched, 0,
        "transfers per kind differ from logs per event"
    );
    assert_eq!(
        scalar_i64(&s.pool, &format!("SELECT count(*) FROM transfers WHERE status <> 'confirmed' AND block_number <= {confirmed}")).await,
        0
    );
    // History: every transfer was included then confirmed; one outbox event per history row.
    assert_eq!(
        scalar_i64(&s.pool, "SELECT count(*) FROM transfer_history").await,
        scalar_i64(
            &s.pool,
            "SELECT count(*) FROM outbox WHERE topic LIKE 'transfer.%'"
        )
        .await
    );
    assert_eq!(
        scalar_i64(
            &s.pool,
            "SELECT count(*) FROM transfer_history WHERE to_status = 'confirmed'"
        )
        .await,
        scalar_i64(
            &s.pool,
            "SELECT count(*) FROM transfers WHERE status = 'confirmed'"
        )
        .await
    );

    // Projections equal the contract at the confirmed block.
    let streams = assert_streams_equal_contract(&s.anvil, &s.pool, confirmed).await;
    let balances = assert_balances_equal_contract(&s.anvil, &s.pool, confirmed).await;
    assert!(
        streams > 20 && balances > 0,
        "{streams} streams, {balances} balances"
    );
    for status in ["settled", "emergency_withdrawn", "superseded"] {
        let n = scalar_i64(
            &s.pool,
            &format!("SELECT count(*) FROM streams WHERE status = '{status}'"),
        )
        .await;
        assert!(n > 0, "no {status} stream after the traffic run");
    }
    assert!(
        scalar_i64(
            &s.pool,
            "SELECT count(*) FROM streams WHERE duplicate_lock_id"
        )
        .await
            >= 2
    );
    assert!(scalar_i64(&s.pool, "SELECT count(*) FROM producers").await > 0);
    assert!(scalar_i64(&s.pool, "SELECT count(*) FROM customer_plans").await > 0);

    // The drift check ran: the projection agrees with the contract everywhere, and the
    // usage-pool drift (paid out of pools, still in the contract's total) is reported.
    wait_for("a drift check at the confirmed height", Duration::from_secs(20), || async {
        let unchecked = scalar_i64(
            &s.pool,
            &format!("SELECT count(*) FROM virtual_balances WHERE checked_block IS NULL OR checked_block < {confirmed}"),
        )
        .await;
        (unchecked == 0).then_some(())
    })
    .await;
    assert_eq!(
        scalar_i64(&s.pool, "SELECT count(*) FROM v_balances WHERE drifted").await,
        0
    );
    let pool_drift = scalar_i64(
        &s.pool,
        "SELECT count(*) FROM v_balances WHERE usage_pool_drift > 0",
    )
    .await;
    assert!(
        pool_drift > 0,
        "usage pools were consumed, so some balance carries the usage-pool drift"
    );
    let metric = metric_sum(
        &s.config,
        "chainsync_balance_usage_pool_drift_rows",
        &["chain=\"devnet\""],
    )
    .await;
    assert_eq!(metric as i64, pool_drift);
    assert_eq!(
        metric_sum(
            &s.config,
            "chainsync_balance_drift_rows",
            &["chain=\"devnet\""]
        )
        .await,
        0.0
    );

    // The views return what the README documents.
    let view = sqlx::query(
        "SELECT tx_hash, lock_id, user_address, status, overdue, stream_type FROM v_streams ORDER BY block_number LIMIT 1",
    )
    .fetch_one(&s.pool)
    .await
    .expect("v_streams");
    assert!(
        view.get::<String, _>("tx_hash").starts_with("0x")
            && view.get::<String, _>("tx_hash").len() == 66
    );
    assert_eq!(view.get::<String, _>("lock_id").len(), 66);
    assert_eq!(view.get::<String, _>("user_address").len(), 42);
    assert!(["regular", "vesting", "usage_pool"]
        .contains(&view.get::<String, _>("stream_type").as_str()));
    assert_eq!(
        scalar_i64(
            &s.pool,
            "SELECT count(*) FROM v_balances WHERE unlocked <> total - locked OR stranded < 0"
        )
        .await,
        0
    );
    let v_transfers = sqlx::query("SELECT id, kind, status, tx_hash, amount FROM v_transfers WHERE kind = 'stream_settled' LIMIT 1")
        .fetch_one(&s.pool)
        .await
        .expect("v_transfers");
    assert_eq!(v_transfers.get::<String, _>("status"), "confirmed");
    assert!(v_transfers.get::<Option<BigDecimal>, _>("amount").is_some());
    // The gauges follow the table.
    let confirmed_rows = scalar_i64(
        &s.pool,
        "SELECT count(*) FROM transfers WHERE status = 'confirmed'",
    )
    .await;
    wait_for("the transfer gauges", Duration::from_secs(10), || async {
        let metric = metric_sum(&s.config, "chainsync_transfers", &["status=\"confirmed\""]).await;
        (metric as i64 == confirmed_rows).then_some(())
    })
    .await;
    drop(s.chainsync);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_three_confirms_exactly_at_the_third_block() {
    let s = setup(&[], "confirmations = 3\n").await;
    let (hash, block) = create_stream(&s.anvil, &s.deployment, 10_000, 3_600).await;
    let identity = format!("{hash:#x}:0");
    wait_indexed(&s.pool, block, Duration::from_secs(30)).await;
    let row = wait_status(
        &s.pool,
        "stream_lock_created",
        &identity,
        "confirming",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(row.3, Some(block as i64));
    // Depth 2: still confirming, and nothing projected yet.
    s.anvil.mine(1).await;
    wait_indexed(&s.pool, block + 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        transfer(&s.pool, "stream_lock_created", &identity)
            .await
            .expect("row")
            .0,
        "confirming"
    );
    assert_eq!(scalar_i64(&s.pool, "SELECT count(*) FROM streams").await, 0);
    // Depth 3: confirmed, recorded at the third block, and projected.
    s.anvil.mine(1).await;
    wait_status(
        &s.pool,
        "stream_lock_created",
        &identity,
        "confirmed",
        Duration::from_secs(10),
    )
    .await;
    let steps = history(&s.pool, "stream_lock_created", &identity).await;
    assert_eq!(
        steps,
        vec![
            (
                None,
                "confirming".into(),
                false,
                "included".into(),
                Some(block as i64)
            ),
            (
                Some("confirming".into()),
                "confirmed".into(),
                false,
                "depth reached".into(),
                Some(block as i64 + 2)
            ),
        ]
    );
    assert_eq!(
        scalar_i64(
            &s.pool,
            "SELECT count(*) FROM streams WHERE status = 'active'"
        )
        .await,
        1
    );
    let topics: Vec<String> = sqlx::query_scalar("SELECT topic FROM outbox ORDER BY seq")
        .fetch_all(&s.pool)
        .await
        .expect("outbox");
    assert_eq!(topics, vec!["transfer.confirming", "transfer.confirmed"]);
    assert_eq!(
        metric_sum(
            &s.config,
            "chainsync_confirmed_block",
            &["chain=\"devnet\""]
        )
        .await as u64,
        block
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finalized_tag_confirms_when_it_passes_the_block() {
    let s = setup(&["--slots-in-an-epoch", "2"], "finality = \"finalized\"\n").await;
    let (hash, block) = create_stream(&s.anvil, &s.deployment, 10_000, 3_600).await;
    let identity = format!("{hash:#x}:0");
    wait_status(
        &s.pool,
        "stream_lock_created",
        &identity,
        "confirming",
        Duration::from_secs(20),
    )
    .await;
    let mut confirmed_seen_at = None;
    for _ in 0..12 {
        s.anvil.mine(1).await;
        let head = s.anvil.block_number().await;
        let finalized = rpc(
            &s.anvil.rpc_url(),
            "eth_getBlockByNumber",
            json!(["finalized", false]),
        )
        .await
        .expect("finalized block");
        let finalized = u64::from_str_radix(
            finalized["number"]
                .as_str()
                .expect("number")
                .trim_start_matches("0x"),
            16,
        )
        .expect("hex");
        wait_indexed(&s.pool, head, Duration::from_secs(10)).await;
        if finalized >= block {
            wait_status(
                &s.pool,
                "stream_lock_created",
                &identity,
                "confirmed",
                Duration::from_secs(10),
            )
            .await;
            confirmed_seen_at = Some(finalized);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            transfer(&s.pool, "stream_lock_created", &identity)
                .await
                .expect("row")
                .0,
            "confirming",
            "confirmed while the finalized tag ({finalized}) is below block {block}"
        );
    }
    assert_eq!(
        confirmed_seen_at,
        Some(block),
        "confirmed when the finalized tag reached the block"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_transactions_fail_with_reasons_get_stuck_and_recover() {
    let s = setup(
        &[],
        "confirmations = 2\nstuck_after = \"2s\"\nhead_stall_after = \"10m\"\n",
    )
    .await;
    let head = s.anvil.block_number().await;
    wait_indexed(&s.pool, head, Duration::from_secs(30)).await;

    // A reverted transaction: failed, with the contract's reason.
    let cancel = StreamLockManager::cancelStreamCall {
        lockId: B256::repeat_byte(0x77),
    };
    let reverted = send(
        &s.anvil,
        accounts::dev_addresses()[2],
        s.deployment.manager,
        cancel.abi_encode(),
        Some(300_000),
    )
    .await;
    chainsync_watch(
        &s.config,
        &[&format!("{reverted:#x}"), "--label", "payment-1"],
    );
    let row = wait_status(
        &s.pool,
        "watched_tx",
        &format!("{reverted:#x}"),
        "failed",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(row.2.as_deref(), Some("reverted: StreamNotFound()"));

    // Registered before it is sent: stuck after stuck_after, then mined and confirmed.
    let sender = accounts::dev_addresses()[3];
    let (late, raw) = signed_transfer(3, nonce_of(&s.anvil, sender).await, 1).await;
    let late_id = format!("{late:#x}");
    chainsync_watch(&s.config, &[&late_id]);
    wait_for(
        "the unmined transaction to be stuck",
        Duration::from_secs(20),
        || async {
            transfer(&s.pool, "watched_tx", &late_id)
                .await
                .filter(|t| t.1 && t.0 == "pending")
        },
    )
    .await;
    wait_for("the stuck gauge", Duration::from_secs(10), || async {
        let stuck = metric_sum(
            &s.config,
            "chainsync_stuck_transfers",
            &["kind=\"watched_tx\""],
        )
        .await;
        (stuck >= 1.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stuck_events = scalar_i64(
        &s.pool,
        &format!("SELECT count(*) FROM outbox o JOIN transfers t ON t.chain = o.chain AND t.id = o.transfer_id
                  WHERE o.topic = 'transfer.stuck' AND t.identity = '{late_id}'"),
    )
    .await;
    assert_eq!(
        stuck_events, 1,
        "one transfer.stuck event, however many sweeps ran"
    );
    s.anvil
        .rpc("eth_sendRawTransaction", json!([hex_of(&raw)]))
        .await
        .expect("broadcast");
    let receipt = wait_receipt(&s.anvil, late).await;
    let mined = block_of(&receipt);
    s.anvil.mine(2).await;
    let row = wait_status(
        &s.pool,
        "watched_tx",
        &late_id,
        "confirmed",
        Duration::from_secs(20),
    )
    .await;
    assert!(!row.1, "a confirmed transfer is no longer stuck");
    assert_eq!(row.3, Some(mined as i64));
    let steps: Vec<(String, bool)> = history(&s.pool, "watched_tx", &late_id)
        .await
        .into_iter()
        .map(|(_, to, stuck, _, _)| (to, stuck))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("pending".into(), false),
            ("pending".into(), true),
            ("confirming".into(), false),
            ("confirmed".into(), false),
        ]
    );

    // Replaced: another transaction with the same sender and nonce is mined.
    let sender = accounts::dev_addresses()[6];
    let nonce = nonce_of(&s.anvil, sender).await;
    let (replaced, _) = signed_transfer(6, nonce, 1).await;
    chainsync_watch(
        &s.config,
        &[
            &format!("{replaced:#x}"),
            "--from",
            &format!("{sender:#x}"),
            "--nonce",
            &nonce.to_string(),
        ],
    );
    let (_, other) = signed_transfer(6, nonce, 2).await;
    s.anvil
        .rpc("eth_sendRawTransaction", json!([hex_of(&other)]))
        .await
        .expect("broadcast");
    let row = wait_status(
        &s.pool,
        "watched_tx",
        &format!("{replaced:#x}"),
        "failed",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(row.2.as_deref(), Some("replaced"));

    // Registering twice is idempotent.
    let again = chainsync_watch(&s.config, &[&format!("{replaced:#x}")]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already watching"));
    assert_eq!(
        scalar_i64(&s.pool, "SELECT count(*) FROM watched_transactions").await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_head_blames_no_transfer_and_overdue_streams_are_flagged() {
    let s = setup(
        &[],
        "confirmations = 1\nstuck_after = \"4s\"\nhead_stall_after = \"1s\"\noverdue_grace = \"2s\"\n",
    )
    .await;
    let (_, block) = create_stream(&s.anvil, &s.deployment, 10_000, 5).await;
    wait_for(
        "the stream to be projected",
        Duration::from_secs(20),
        || async {
            (scalar_i64(
                &s.pool,
                "SELECT count(*) FROM streams WHERE status = 'active'",
            )
            .await
                == 1)
                .then_some(())
        },
    )
    .await;
    let unmined = B256::repeat_byte(0x42);
    chainsync_watch(&s.config, &[&format!("{unmined:#x}")]);

    // No block for longer than head_stall_after: the chain is stalled, the transfer not blamed.
    wait_for(
        "the chain to be marked stalled",
        Duration::from_secs(10),
        || async {
            let stalled: bool =
                sqlx::query_scalar("SELECT stalled FROM chain_status WHERE chain = 'devnet'")
                    .fetch_one(&s.pool)
                    .await
                    .ok()?;
            stalled.then_some(())
        },
    )
    .await;
    assert_eq!(
        metric_sum(&s.config, "chainsync_chain_stalled", &["chain=\"devnet\""]).await,
        1.0
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let row = transfer(&s.pool, "watched_tx", &format!("{unmined:#x}"))
        .await
        .expect("row");
    assert!(!row.1, "a transfer on a stalled chain is not flagged stuck");
    assert_eq!(
        scalar_i64(
            &s.pool,
            "SELECT count(*) FROM streams WHERE overdue_since IS NOT NULL"
        )
        .await,
        0
    );

    // Time passes on chain and blocks flow again: not stalled; the stream (5 s long, not
    // settled) is overdue past its end plus the grace; the old transfer is now stuck.
    s.anvil
        .rpc("evm_increaseTime", json!([30]))
        .await
        .expect("increase time");
    let miner = {
        let url = s.anvil.rpc_url();
        tokio::spawn(async move {
            loop {
                let _ = rpc(&url, "evm_mine", json!([])).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    wait_for(
        "the stream to be overdue",
        Duration::from_secs(15),
        || async {
            (scalar_i64(&s.pool, "SELECT count(*) FROM v_streams WHERE overdue").await == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        scalar_i64(
            &s.pool,
            "SELECT count(*) FROM outbox WHERE topic = 'stream.overdue'"
        )
        .await,
        1
    );
    wait_for(
        "the transfer to be stuck once the chain moves",
        Duration::from_secs(15),
        || async {
            transfer(&s.pool, "watched_tx", &format!("{unmined:#x}"))
                .await
                .filter(|t| t.1)
        },
    )
    .await;
    let stalled: bool =
        sqlx::query_scalar("SELECT stalled FROM chain_status WHERE chain = 'devnet'")
            .fetch_one(&s.pool)
            .await
            .expect("status");
    assert!(!stalled);
    assert!(block > 0);
    miner.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_below_the_threshold_reconfirm_deeper_ones_rebuild_projections_and_orphans_drop() {
    let s = setup(&[], "confirmations = 3\ndropped_after = \"6s\"\n").await;
    // Below the threshold: the including block is replaced by one that includes the same
    // transaction again. anvil gives the replacement its parent's timestamp, so after a pause the
    // re-included stream starts at another time than the orphaned one did.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (hash, block) = create_stream(&s.anvil, &s.deployment, 10_000, 3_600).await;
    let orphaned_time = block_timestamp(&s.anvil, block).await;
    let identity = format!("{hash:#x}:0");
    wait_status(
        &s.pool,
        "stream_lock_created",
        &identity,
        "confirming",
        Duration::from_secs(20),
    )
    .await;
    let raw = s
        .anvil
        .rpc("eth_getRawTransactionByHash", json!([format!("{hash:#x}")]))
        .await
        .expect("raw transaction");
    s.anvil
        .rpc("anvil_reorg", json!([1, [[raw, 0]]]))
        .await
        .expect("anvil_reorg");
    wait_for("the reorg to be seen", Duration::from_secs(20), || async {
        (scalar_i64(&s.pool, "SELECT count(*) FROM reorgs").await == 1).then_some(())
    })
    .await;
    assert_ne!(
        block_timestamp(&s.anvil, block).await,
        orphaned_time,
        "the replacement block keeps the orphaned block's timestamp: the test checks nothing"
    );
    s.anvil.mine(3).await;
    wait_status(
        &s.pool,
        "stream_lock_created",
        &identity,
        "confirmed",
        Duration::from_secs(20),
    )
    .await;
    let reasons: Vec<(String, String)> = history(&s.pool, "stream_lock_created", &identity)
        .await
        .into_iter()
        .map(|(_, to, _, reason, _)| (to, reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("confirming".into(), "included".into()),
            ("reorged".into(), "block orphaned".into()),
            ("confirming".into(), "reincluded".into()),
            ("confirmed".into(), "depth reached".into()),
        ]
    );
    assert_eq!(
        metric_sum(
            &s.config,
            "chainsync_deep_reorgs_total",
            &["chain=\"devnet\""]
        )
        .await,
        0.0
    );

    // Beyond the threshold: a confirmed, projected stream is orphaned and not re-included.
    let (deep_hash, deep_block) = create_stream(&s.anvil, &s.deployment, 20_000, 7_200).await;
    let deep_identity = format!("{deep_hash:#x}:0");
    assert!(deep_block > block + 3);
    s.anvil.mine(4).await;
    wait_status(
        &s.pool,
        "stream_lock_created",
        &deep_identity,
        "confirmed",
        Duration::from_secs(20),
    )
    .await;
    wait_for(
        "both streams projected",
        Duration::from_secs(10),
        || async { (scalar_i64(&s.pool, "SELECT count(*) FROM streams").await == 2).then_some(()) },
    )
    .await;
    s.anvil
        .rpc("anvil_reorg", json!([5, []]))
        .await
        .expect("anvil_reorg");
    wait_for("the deep reorg metric", Duration::from_secs(20), || async {
        let deep = metric_sum(
            &s.config,
            "chainsync_deep_reorgs_total",
            &["chain=\"devnet\""],
        )
        .await;
        (deep == 1.0).then_some(())
    })
    .await;
    let row = wait_status(
        &s.pool,
        "stream_lock_created",
        &deep_identity,
        "reorged",
        Duration::from_secs(10),
    )
    .await;
    assert!(row.0 == "reorged");
    let last = history(&s.pool, "stream_lock_created", &deep_identity)
        .await
        .pop()
        .expect("history");
    assert_eq!(last.0.as_deref(), Some("confirmed"));
    assert_eq!(
        last.3,
        "block orphaned by a reorg deeper than the confirmation threshold"
    );
    assert_eq!(
        scalar_i64(&s.pool, "SELECT deep_reorgs FROM chain_status").await,
        1
    );
    // Rebuilt from canonical events: the orphaned stream is gone, the other one and the balances
    // still equal the contract.
    s.anvil.mine(3).await;
    let head = s.anvil.block_number().await;
    wait_indexed(&s.pool, head, Duration::from_secs(20)).await;
    wait_for(
        "the confirmed height to pass the fork",
        Duration::from_secs(20),
        || async {
            confirmed_block(&s.pool)
                .await
                .filter(|c| *c as u64 >= head - 2)
        },
    )
    .await;
    assert_eq!(scalar_i64(&s.pool, "SELECT count(*) FROM streams").await, 1);
    assert_eq!(
        assert_streams_equal_contract(&s.anvil, &s.pool, head - 2).await,
        1
    );
    assert!(assert_balances_equal_contract(&s.anvil, &s.pool, head - 2).await > 0);
    assert!(s
        .chainsync
        .logged("reorg deeper than the confirmation threshold"));
    // Never re-included: dropped once dropped_after has passed.
    let row = wait_status(
        &s.pool,
        "stream_lock_created",
        &deep_identity,
        "failed",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(row.2.as_deref(), Some("dropped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_the_projection_missed_are_reported_as_drift() {
    // The manager is indexed from a block after some deposits: the projection cannot know them,
    // and the drift check says so.
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    create_stream(&anvil, &deployment, 50_000, 3_600).await;
    let start = anvil.block_number().await + 1;
    let mut targets = contracts(&deployment);
    for target in &mut targets {
        if target.0 == "stream_lock_manager" {
            target.2 = start;
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &anvil.rpc_url(),
        &db.url,
        &targets,
        "confirmations = 1\ndrift_check_interval = \"1s\"\n",
    );
    let _chainsync = Chainsync::run(&config);
    create_stream(&anvil, &deployment, 30_000, 3_600).await;
    wait_for(
        "the drift to be stored",
        Duration::from_secs(30),
        || async {
            (scalar_i64(&pool, "SELECT count(*) FROM v_balances WHERE drifted").await == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        metric_sum(
            &config,
            "chainsync_balance_drift_rows",
            &["chain=\"devnet\""]
        )
        .await,
        1.0
    );
    let row = sqlx::query("SELECT total, onchain_total, drift_total, drifted FROM v_balances")
        .fetch_one(&pool)
        .await
        .expect("v_balances");
    assert_eq!(row.get::<BigDecimal, _>("total"), BigDecimal::from(30_000));
    assert_eq!(
        row.get::<Option<BigDecimal>, _>("onchain_total"),
        Some(BigDecimal::from(80_000))
    );
    assert_eq!(
        row.get::<Option<BigDecimal>, _>("drift_total"),
        Some(BigDecimal::from(50_000))
    );
    assert!(row.get::<bool, _>("drifted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_blocks_removed_events_and_delivered_outbox_rows() {
    let anvil = Anvil::start().await;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &anvil.rpc_url(),
        &db.url,
        &contracts(&deployment),
        "confirmations = 1\nreorg_window = 4\n",
    );
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replacen(
        "[[evm]]",
        "[retention]\nblock_window = \"1s\"\nremoved_events = \"1s\"\ndelivered_outbox = \"1s\"\n\n[[evm]]",
        1,
    );
    std::fs::write(&config, text).expect("config");
    let chainsync = Chainsync::run(&config);

    create_stream(&anvil, &deployment, 10_000, 3_600).await;
    anvil.mine(10).await;
    // A creation orphaned by a reorg leaves a removed log.
    create_stream(&anvil, &deployment, 20_000, 3_600).await;
    let head = anvil.block_number().await;
    wait_indexed(&pool, head, Duration::from_secs(30)).await;
    anvil
        .rpc("anvil_reorg", json!([1, []]))
        .await
        .expect("reorg");
    wait_for("the orphaned log", Duration::from_secs(20), || async {
        (scalar_i64(&pool, "SELECT count(*) FROM evm_logs WHERE removed").await > 0).then_some(())
    })
    .await;
    // The notifier's part, for this test: the first outbox row was delivered an hour ago.
    sqlx::query("UPDATE outbox SET delivered_at = now() - interval '1 hour' WHERE seq = 1")
        .execute(&pool)
        .await
        .expect("mark delivered");
    let outbox_before = scalar_i64(&pool, "SELECT count(*) FROM outbox").await;
    anvil.mine(2).await;

    wait_for("retention to prune", Duration::from_secs(20), || async {
        let removed = scalar_i64(&pool, "SELECT count(*) FROM evm_logs WHERE removed").await;
        let delivered = scalar_i64(
            &pool,
            "SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL",
        )
        .await;
        let tip = scalar_i64(&pool, "SELECT max(indexed_to) FROM contract_cursors").await;
        let old_blocks = scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM evm_blocks WHERE number < {tip} - 4"),
        )
        .await;
        (removed == 0 && delivered == 0 && old_blocks == 0).then_some(())
    })
    .await;
    // Only the delivered row went; the window above tip - reorg_window stays for reorg detection.
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM outbox").await,
        outbox_before - 1
    );
    assert!(scalar_i64(&pool, "SELECT count(*) FROM evm_blocks").await > 0);
    assert!(scalar_i64(&pool, "SELECT count(*) FROM evm_logs WHERE NOT removed").await > 0);
    assert!(chainsync.logged("retention pass pruned rows"));
}
