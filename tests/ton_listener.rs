//! The TON listener end to end against the loopback liteserver serving the `@ton/sandbox`
//! scenarios: deposits with comments and memos, jetton deposits with and without forward TON,
//! the bounce (failed, three transactions linked), the non-bounceable transfer to an
//! uninitialised account (delivered), outgoing messages followed to their destinations,
//! promotion at exactly K masterchain blocks, a stuck outgoing edge, and every deposit recorded
//! exactly once across `kill -9` restarts. Real liteserver protocol, real PostgreSQL, the real
//! `chainsync` binary.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::ton::{scenario, scenario_account, write_ton_config, Account, Liteserver};
use common::{wait_for, Chainsync, TestDb};
use serde_json::Value;
use sqlx::{PgPool, Row};

/// Every step of every scenario is out after this many masterchain blocks at 4 steps per block.
const LAST_RELEASE: u64 = 2 + 59 / 4;

fn accounts_of_all_scenarios() -> Vec<Account<'static>> {
    let comments = scenario("wallet_comments");
    let jetton = scenario("jetton");
    let mut accounts = vec![
        Account {
            role: "deposit",
            address: scenario_account(&comments, "deposit"),
            extra: "memo = \"order-\"".into(),
        },
        Account {
            role: "jetton_deposit",
            address: scenario_account(&jetton, "jetton_owner"),
            extra: format!(
                "jetton_masters = [\"{}\"]",
                scenario_account(&jetton, "jetton_master")
            ),
        },
    ];
    for name in ["bounce", "nonbounce_uninit", "outgoing"] {
        accounts.push(Account {
            role: "hot_wallet",
            address: scenario_account(&scenario(name), "hot_wallet"),
            extra: String::new(),
        });
    }
    accounts.extend(many_deposit_accounts().into_iter().map(|address| Account {
        role: "deposit",
        address,
        extra: String::new(),
    }));
    accounts
}

fn many_deposit_accounts() -> Vec<String> {
    let many = scenario("many_deposits");
    many["accounts"]
        .as_object()
        .expect("accounts")
        .iter()
        .filter(|(label, _)| label.starts_with("deposit_"))
        .map(|(_, address)| address.as_str().expect("address").to_owned())
        .collect()
}

/// The deposits the scenario holds for `accounts`, from the fixture's own decoded values:
/// (account, lt) → (value, comment).
fn expected_deposits(
    name: &str,
    accounts: &[String],
) -> BTreeMap<(String, String), (String, Option<String>)> {
    let file = scenario(name);
    let mut out = BTreeMap::new();
    for step in file["steps"].as_array().expect("steps") {
        for tx in step["transactions"].as_array().expect("transactions") {
            let account = tx["account"].as_str().expect("account").to_owned();
            if !accounts.contains(&account) {
                continue;
            }
            let msg = &tx["expected"]["in_msg"];
            if msg["type"] != "internal" || msg["bounced"] == true || msg["value"] == "0" {
                continue;
            }
            out.insert(
                (account, tx["lt"].as_str().expect("lt").to_owned()),
                (
                    msg["value"].as_str().expect("value").to_owned(),
                    msg["comment"].as_str().map(str::to_owned),
                ),
            );
        }
    }
    out
}

async fn head(pool: &PgPool) -> Option<u64> {
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT indexed_block FROM chain_status WHERE chain = 'ton-test'",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
    .flatten()
    .map(|v| v as u64)
}

async fn wait_head(pool: &PgPool, target: u64, deadline: Duration) {
    wait_for(
        &format!("masterchain block {target} indexed"),
        deadline,
        || async { head(pool).await.filter(|h| *h >= target) },
    )
    .await;
}

async fn deposits(pool: &PgPool, kind: &str) -> Vec<sqlx::postgres::PgRow> {
    sqlx::query(
        "SELECT account, tx_account, lt::text AS lt, amount::text AS amount, comment, memo_matched,
                sender, forward_ton_amount::text AS forward, notified, status, failure_reason, transfer_id
         FROM v_ton_deposits WHERE chain = 'ton-test' AND kind = $1 ORDER BY tx_account, lt",
    )
    .bind(kind)
    .fetch_all(pool)
    .await
    .expect("deposits")
}

#[tokio::test]
async fn scenarios_are_indexed_and_reconciled() {
    let liteserver = Liteserver::start(&["--block-interval", "1s", "--steps-per-block", "4"]);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_ton_config(
        dir.path(),
        &db.url,
        &[liteserver.port],
        "confirmations = 2\npoll_interval = \"200ms\"\nstuck_after = \"10m\"",
        &accounts_of_all_scenarios(),
    );
    let chainsync = Chainsync::run(&config);
    wait_head(&pool, LAST_RELEASE + 3, Duration::from_secs(90)).await;

    // Deposits with comments and memo matching, each recorded once with the fixture's values.
    let comments = scenario("wallet_comments");
    let deposit = scenario_account(&comments, "deposit");
    let expected = expected_deposits("wallet_comments", std::slice::from_ref(&deposit));
    let rows = deposits(&pool, "ton").await;
    let stored: BTreeMap<(String, String), (String, Option<String>)> = rows
        .iter()
        .filter(|r| r.get::<String, _>("account") == deposit)
        .map(|r| {
            (
                (r.get("account"), r.get("lt")),
                (r.get("amount"), r.get("comment")),
            )
        })
        .collect();
    assert_eq!(stored, expected, "deposits of wallet_comments");
    let comments_seen: Vec<Option<String>> = stored.values().map(|(_, c)| c.clone()).collect();
    assert!(
        comments_seen
            .iter()
            .flatten()
            .any(|c| c.starts_with("order-1003 ") && c.len() > 250),
        "the snake comment across cells is whole: {comments_seen:?}"
    );
    assert!(comments_seen
        .iter()
        .flatten()
        .any(|c| c == "order-1004 café ✓"));
    for row in rows
        .iter()
        .filter(|r| r.get::<String, _>("account") == deposit)
    {
        let comment: Option<String> = row.get("comment");
        let matched: Option<bool> = row.get("memo_matched");
        assert_eq!(
            matched,
            Some(comment.as_deref().is_some_and(|c| c.starts_with("order-"))),
            "memo match of {comment:?}"
        );
        assert_eq!(row.get::<String, _>("status"), "confirmed");
    }

    // Many deposits across many accounts: each exactly once.
    let many = many_deposit_accounts();
    let expected_many = expected_deposits("many_deposits", &many);
    let stored_many: BTreeMap<(String, String), (String, Option<String>)> = rows
        .iter()
        .filter(|r| many.contains(&r.get::<String, _>("account")))
        .map(|r| {
            (
                (r.get("account"), r.get("lt")),
                (r.get("amount"), r.get("comment")),
            )
        })
        .collect();
    assert_eq!(stored_many.len(), expected_many.len());
    assert_eq!(stored_many, expected_many, "deposits of many_deposits");

    // Jetton deposits: credited from internal_transfer, with and without forward TON.
    let jetton = scenario("jetton");
    let jettons = deposits(&pool, "jetton").await;
    assert_eq!(jettons.len(), 2, "two jetton deposits");
    let owner = scenario_account(&jetton, "jetton_owner");
    let wallet = scenario_account(&jetton, "jetton_owner_jetton_wallet");
    let with_forward = &jettons[0];
    let without_forward = &jettons[1];
    for row in &jettons {
        assert_eq!(row.get::<String, _>("account"), owner);
        assert_eq!(
            row.get::<String, _>("tx_account"),
            wallet,
            "credited on the derived wallet"
        );
        assert_eq!(row.get::<String, _>("status"), "confirmed");
        assert_eq!(
            row.get::<Option<String>, _>("sender").as_deref(),
            Some(scenario_account(&jetton, "jetton_sender").as_str())
        );
    }
    assert_eq!(with_forward.get::<Option<bool>, _>("notified"), Some(true));
    assert_eq!(
        with_forward.get::<Option<String>, _>("comment").as_deref(),
        Some("order-2001")
    );
    assert_eq!(
        with_forward.get::<Option<String>, _>("forward").as_deref(),
        Some("50000000")
    );
    assert_eq!(
        without_forward.get::<Option<bool>, _>("notified"),
        Some(false)
    );
    assert_eq!(
        without_forward
            .get::<Option<String>, _>("forward")
            .as_deref(),
        Some("0")
    );
    let amounts: Vec<String> = jettons.iter().map(|r| r.get("amount")).collect();
    let expected_amounts: Vec<String> = jetton["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .flat_map(|s| s["transactions"].as_array().expect("txs").iter())
        .filter(|tx| tx["account"] == wallet.as_str())
        .filter_map(|tx| {
            tx["expected"]["in_msg"]["jetton"]["amount"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(amounts, expected_amounts, "amounts from internal_transfer");

    // Outgoing: the bounce is failed(bounced) with its three transactions linked.
    let bounce = scenario("bounce");
    let edge = sqlx::query(
        "SELECT outcome, status, failure_reason, dest_lt::text AS dest_lt, bounce_lt::text AS bounce_lt,
                source_lt::text AS source_lt, destination
         FROM v_ton_transfers WHERE chain = 'ton-test' AND source = $1",
    )
    .bind(scenario_account(&bounce, "hot_wallet"))
    .fetch_all(&pool)
    .await
    .expect("edges");
    let bounced: Vec<_> = edge
        .iter()
        .filter(|r| r.get::<String, _>("destination") == scenario_account(&bounce, "bounce_dest"))
        .collect();
    assert_eq!(bounced.len(), 1);
    let bounced = bounced[0];
    assert_eq!(bounced.get::<String, _>("outcome"), "bounced");
    assert_eq!(bounced.get::<String, _>("status"), "failed");
    assert_eq!(
        bounced
            .get::<Option<String>, _>("failure_reason")
            .as_deref(),
        Some("bounced")
    );
    let links: Vec<Option<String>> = vec![
        Some(bounced.get("source_lt")),
        bounced.get("dest_lt"),
        bounced.get("bounce_lt"),
    ];
    assert_eq!(
        links,
        vec![
            Some("4000000".to_owned()),
            Some("5000000".to_owned()),
            Some("6000000".to_owned())
        ],
        "send, bounce and bounce back linked"
    );

    // The non-bounceable transfer to an uninitialised account is delivered.
    let nonbounce = scenario("nonbounce_uninit");
    let delivered: (String, String) = sqlx::query_as(
        "SELECT outcome, status FROM v_ton_transfers WHERE chain = 'ton-test' AND destination = $1",
    )
    .bind(scenario_account(&nonbounce, "nonbounce_dest"))
    .fetch_one(&pool)
    .await
    .expect("non-bounceable edge");
    assert_eq!(delivered, ("delivered".to_owned(), "confirmed".to_owned()));

    // Outgoing payouts followed to their destinations.
    let outgoing = scenario("outgoing");
    let payouts: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT outcome, status, comment FROM v_ton_transfers
         WHERE chain = 'ton-test' AND source = $1 AND destination <> $2 ORDER BY created_lt",
    )
    .bind(scenario_account(&outgoing, "hot_wallet"))
    .bind(scenario_account(&outgoing, "funder"))
    .fetch_all(&pool)
    .await
    .expect("payouts");
    let payees: Vec<String> = ["payee", "payee_1", "payee_2", "payee_3"]
        .iter()
        .map(|l| scenario_account(&outgoing, l))
        .collect();
    assert_eq!(payouts.len(), payees.len(), "{payouts:?}");
    assert!(
        payouts
            .iter()
            .all(|(o, s, _)| o == "delivered" && s == "confirmed"),
        "{payouts:?}"
    );
    assert_eq!(payouts[0].2.as_deref(), Some("payout-1"));

    // K = 2: every confirmed TON transfer was confirmed exactly 2 masterchain blocks after the
    // block it was seen (or delivered) at.
    let gaps: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT t.id,
                (SELECT block_number FROM transfer_history h WHERE h.chain = t.chain AND h.transfer_id = t.id
                   AND h.to_status = 'confirming'),
                (SELECT block_number FROM transfer_history h WHERE h.chain = t.chain AND h.transfer_id = t.id
                   AND h.to_status = 'confirmed')
         FROM transfers t WHERE t.chain = 'ton-test' AND t.status = 'confirmed'",
    )
    .fetch_all(&pool)
    .await
    .expect("history");
    assert!(gaps.len() > 400, "confirmed transfers: {}", gaps.len());
    let off: Vec<_> = gaps
        .iter()
        .filter(|(_, confirming, confirmed)| match (confirming, confirmed) {
            (Some(a), Some(b)) => b - a != 2,
            _ => true,
        })
        .collect();
    assert!(
        off.is_empty(),
        "confirmed at other than K = 2 blocks: {off:?}"
    );

    // One outbox event per history row; no transfer created twice.
    let (history, outbox): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM transfer_history WHERE chain = 'ton-test'),
                (SELECT count(*) FROM outbox WHERE chain = 'ton-test')",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert_eq!(history, outbox);
    drop(chainsync);
}

#[tokio::test]
async fn an_outgoing_message_that_never_arrives_is_flagged_stuck() {
    let outgoing = scenario("outgoing");
    let payee = scenario_account(&outgoing, "payee");
    let liteserver = Liteserver::start(&[
        "--block-interval",
        "300ms",
        "--steps-per-block",
        "20",
        "--withhold",
        &payee,
    ]);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_ton_config(
        dir.path(),
        &db.url,
        &[liteserver.port],
        "confirmations = 0\npoll_interval = \"200ms\"\nstuck_after = \"3s\"",
        &[Account {
            role: "hot_wallet",
            address: scenario_account(&outgoing, "hot_wallet"),
            extra: String::new(),
        }],
    );
    let _chainsync = Chainsync::run(&config);
    let stuck: (String, bool) = wait_for("the payout to be flagged stuck", Duration::from_secs(60), || async {
        sqlx::query_as(
            "SELECT status, stuck FROM v_ton_transfers WHERE chain = 'ton-test' AND destination = $1 AND stuck",
        )
        .bind(&payee)
        .fetch_optional(&pool)
        .await
        .ok()
        .flatten()
    })
    .await;
    assert_eq!(stuck, ("pending".to_owned(), true));
    // The other payouts arrived and are confirmed; exactly one stuck event was emitted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events: Vec<Value> = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE chain = 'ton-test' AND topic = 'transfer.stuck'",
    )
    .fetch_all(&pool)
    .await
    .expect("outbox");
    assert_eq!(events.len(), 1, "{events:?}");
    let others: Vec<(String, String)> = sqlx::query_as(
        "SELECT destination, status FROM v_ton_transfers WHERE chain = 'ton-test' AND destination <> $1
           AND destination <> $2",
    )
    .bind(&payee)
    .bind(scenario_account(&outgoing, "funder"))
    .fetch_all(&pool)
    .await
    .expect("others");
    assert_eq!(others.len(), 3);
    assert!(others.iter().all(|(_, s)| s == "confirmed"), "{others:?}");
}

#[tokio::test]
async fn every_deposit_is_recorded_once_across_kill_9_restarts() {
    let liteserver = Liteserver::start(&["--block-interval", "400ms", "--steps-per-block", "1"]);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let many = many_deposit_accounts();
    let accounts: Vec<Account<'_>> = many
        .iter()
        .map(|address| Account {
            role: "deposit",
            address: address.clone(),
            extra: String::new(),
        })
        .collect();
    let config = write_ton_config(
        dir.path(),
        &db.url,
        &[liteserver.port],
        "confirmations = 1\npoll_interval = \"100ms\"",
        &accounts,
    );
    // Kill the indexer at seeded moments while the deposits are being released.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    let mut kills = 0;
    let final_release = 2 + 59;
    loop {
        let mut chainsync = Chainsync::run(&config);
        let wait = rand::Rng::gen_range(&mut rng, 700..2500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        if head(&pool).await.is_some_and(|h| h >= final_release) {
            drop(chainsync);
            break;
        }
        chainsync.kill9();
        kills += 1;
        assert!(kills < 60, "the release did not finish");
    }
    assert!(kills >= 3, "killed {kills} times");
    let _chainsync = Chainsync::run(&config);
    wait_head(&pool, final_release + 2, Duration::from_secs(60)).await;
    let expected = expected_deposits("many_deposits", &many);
    let rows = deposits(&pool, "ton").await;
    let stored: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get("account"), r.get("lt")))
        .collect();
    let unique: HashSet<&(String, String)> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "no deposit twice");
    assert_eq!(
        stored.into_iter().collect::<HashSet<_>>(),
        expected.keys().cloned().collect::<HashSet<_>>(),
        "every deposit, after {kills} kills"
    );
    // Exactly one "confirming" and one "confirmed" event per deposit.
    let per_transfer: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT transfer_id, count(*) FROM outbox WHERE chain = 'ton-test' GROUP BY transfer_id
         HAVING count(*) <> 2",
    )
    .fetch_all(&pool)
    .await
    .expect("outbox");
    assert!(
        per_transfer.is_empty(),
        "transfers with other than two events: {per_transfer:?}"
    );
}

/// The TEP-467 hashes of the external messages a scenario account received, by the decoder.
fn external_hashes(scenario: &Value, account: &str) -> Vec<String> {
    let mut out = Vec::new();
    for step in scenario["steps"].as_array().expect("steps") {
        for tx in step["transactions"].as_array().expect("transactions") {
            if tx["account"] != account {
                continue;
            }
            let decoded = chainsync_actors::ton::decode::decode_transaction_base64(
                tx["boc_base64"].as_str().expect("boc"),
                0,
            )
            .expect("decodes");
            if let Some(hash) = decoded.in_msg.and_then(|m| m.normalized_hash) {
                out.push(hex::encode(hash));
            }
        }
    }
    out
}

fn register(config: &std::path::Path, hash: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chainsync"))
        .args(["watch", "--config"])
        .arg(config)
        .args(["--chain", "ton-test", hash, "--label", "payout-batch"])
        .env_remove("DATABASE_URL")
        .output()
        .expect("chainsync watch runs");
    assert!(
        output.status.success(),
        "chainsync watch failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn registered_external_messages_are_followed_and_unseen_ones_flagged_stuck() {
    let outgoing = scenario("outgoing");
    let hot_wallet = scenario_account(&outgoing, "hot_wallet");
    let hashes = external_hashes(&outgoing, &hot_wallet);
    assert!(
        hashes.len() >= 2,
        "the hot wallet sends with external messages: {hashes:?}"
    );
    // The masterchain stays at block 1 for a few seconds: time to register before anything lands.
    let genesis = (common::ton::now_unix_ms() + 6_000).to_string();
    let liteserver = Liteserver::start(&[
        "--only",
        "outgoing",
        "--block-interval",
        "500ms",
        "--genesis-unix-ms",
        &genesis,
    ]);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_ton_config(
        dir.path(),
        &db.url,
        &[liteserver.port],
        "confirmations = 1\npoll_interval = \"200ms\"\nstuck_after = \"5s\"",
        &[Account {
            role: "hot_wallet",
            address: hot_wallet.clone(),
            extra: String::new(),
        }],
    );
    let _chainsync = Chainsync::run(&config);
    wait_for(
        "the network identity to be recorded",
        Duration::from_secs(30),
        || async { head(&pool).await.map(|_| ()) },
    )
    .await;
    assert_eq!(
        head(&pool).await,
        Some(1),
        "registered before anything landed"
    );
    for hash in &hashes {
        assert!(register(&config, hash).contains("watching external message"));
    }
    let never = "ab".repeat(32);
    register(&config, &never);
    // Registering again is idempotent.
    assert!(register(&config, &hashes[0]).contains(&hashes[0]));

    let statuses: Vec<(String, String, bool, Value)> = wait_for(
        "registered transfers to settle",
        Duration::from_secs(60),
        || async {
            let rows: Vec<(String, String, bool, Value)> = sqlx::query_as(
                "SELECT identity, status, stuck, details FROM transfers
                 WHERE chain = 'ton-test' AND identity LIKE 'ext:%' ORDER BY id",
            )
            .fetch_all(&pool)
            .await
            .ok()?;
            let done = rows.len() == hashes.len() + 1
                && rows.iter().all(|(identity, status, stuck, _)| {
                    if identity.ends_with(&never) {
                        *stuck && status == "pending"
                    } else {
                        status == "confirmed"
                    }
                });
            done.then_some(rows)
        },
    )
    .await;
    for (identity, _, _, details) in &statuses {
        assert_eq!(details["label"], "payout-batch");
        if !identity.ends_with(&never) {
            assert_eq!(details["account"], hot_wallet.as_str(), "{details}");
            assert!(details["lt"].is_string());
        }
    }
    // The payouts the registered messages caused carry the hash too.
    let linked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM v_ton_transfers WHERE chain = 'ton-test' AND ext_normalized_hash = ANY($1)",
    )
    .bind(&hashes)
    .fetch_one(&pool)
    .await
    .expect("linked");
    assert!(
        linked >= 4,
        "payouts linked to their external message: {linked}"
    );
}

/// Liteserver arguments serving only `wallet_comments` quickly, on a shared clock.
fn comments_args(genesis: &str) -> Vec<&str> {
    vec![
        "--only",
        "wallet_comments",
        "--block-interval",
        "500ms",
        "--genesis-unix-ms",
        genesis,
    ]
}

/// Runs chainsync watching the `wallet_comments` deposit account through the liteservers at
/// `ports`, in that order; returns the process, its config path and the account.
fn watch_comments_deposit(
    dir: &std::path::Path,
    db: &TestDb,
    ports: &[u16],
) -> (Chainsync, std::path::PathBuf, String) {
    let deposit = scenario_account(&scenario("wallet_comments"), "deposit");
    let config = write_ton_config(
        dir,
        &db.url,
        ports,
        "confirmations = 0\npoll_interval = \"200ms\"",
        &[Account {
            role: "deposit",
            address: deposit.clone(),
            extra: String::new(),
        }],
    );
    (Chainsync::run(&config), config, deposit)
}

/// Waits until every deposit of `wallet_comments` is stored, and checks they are the scenario's,
/// in order.
async fn assert_every_comments_deposit(pool: &PgPool, deposit: &str, what: &str) {
    let expected = expected_deposits("wallet_comments", &[deposit.to_owned()]);
    let stored: Vec<(String, String)> = wait_for(what, Duration::from_secs(60), || async {
        let rows = deposits(pool, "ton").await;
        let stored: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r.get("account"), r.get("lt")))
            .collect();
        (stored.len() == expected.len()).then_some(stored)
    })
    .await;
    assert_eq!(
        stored,
        expected.keys().cloned().collect::<Vec<_>>(),
        "all deposits, in order"
    );
}

/// `chainsync_rpc_requests_total` of the test network for one method and outcome.
async fn liteserver_requests(config: &std::path::Path, method: &str, outcome: &str) -> f64 {
    let text = reqwest::get(common::metrics_url(config))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let series = format!(
        r#"chainsync_rpc_requests_total{{chain="ton-test",method="{method}",outcome="{outcome}"}}"#
    );
    text.lines()
        .find(|l| l.starts_with(&series))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn indexing_survives_an_out_of_sync_liteserver_and_one_that_dies() {
    let genesis = common::ton::now_unix_ms().to_string();
    let args = comments_args(&genesis);
    let stale = Liteserver::start(&[&["--not-ready"][..], &args[..]].concat());
    let mut doomed = Liteserver::start(&args);
    let healthy = Liteserver::start(&args);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (chainsync, config, deposit) =
        watch_comments_deposit(dir.path(), &db, &[stale.port, doomed.port, healthy.port]);
    // Half-way through the scenario, the liteserver in use dies (its connections drop).
    wait_head(&pool, 5, Duration::from_secs(30)).await;
    doomed.kill();
    assert_every_comments_deposit(&pool, &deposit, "every deposit despite the liteservers").await;
    assert!(
        liteserver_requests(&config, "get_masterchain_info", "not_ready").await >= 1.0,
        "the out-of-sync liteserver was tried and counted"
    );
    drop(chainsync);
}

/// How many transactions of `account` a scenario holds.
fn scenario_transactions(scenario: &Value, account: &str) -> usize {
    scenario["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .flat_map(|step| step["transactions"].as_array().expect("transactions"))
        .filter(|tx| tx["expected"]["account"] == account)
        .count()
}

#[tokio::test]
async fn a_liteserver_whose_lists_skip_transactions_costs_no_deposit() {
    let genesis = common::ton::now_unix_ms().to_string();
    let args = comments_args(&genesis);
    // First in line: a liteserver that leaves the second transaction out of every list.
    let broken = Liteserver::start(&[&["--broken-lists"][..], &args[..]].concat());
    let healthy = Liteserver::start(&args);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (chainsync, config, deposit) =
        watch_comments_deposit(dir.path(), &db, &[broken.port, healthy.port]);
    assert_every_comments_deposit(
        &pool,
        &deposit,
        "every deposit despite the faulty liteserver",
    )
    .await;
    // And nothing else: every stored transaction of the account is one the scenario has.
    let raw_count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ton_transactions WHERE chain = 'ton-test' AND account = $1",
    )
    .bind(&deposit)
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(
        raw_count as usize,
        scenario_transactions(&scenario("wallet_comments"), &deposit),
        "the account's whole chain, no gap"
    );
    assert!(
        liteserver_requests(&config, "get_transactions", "malformed").await >= 1.0,
        "the faulty liteserver was asked, refused and counted"
    );
    drop(chainsync);
}

#[tokio::test]
async fn a_database_of_another_network_is_refused() {
    let liteserver = Liteserver::start(&["--only", "bounce", "--block-interval", "500ms"]);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    sqlx::query(
        "INSERT INTO chains (name, kind, genesis_hash, network) VALUES ('ton-test', 'ton', $1, 'devnet')",
    )
    .bind(vec![7u8; 32])
    .execute(&pool)
    .await
    .expect("seed another network's identity");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_ton_config(dir.path(), &db.url, &[liteserver.port], "", &[]);
    let mut chainsync = Chainsync::run(&config);
    let status = wait_for(
        "chainsync to refuse the database",
        Duration::from_secs(30),
        || {
            let exited = chainsync.child.try_wait().ok().flatten();
            async move { exited }
        },
    )
    .await;
    assert!(!status.success());
    assert!(
        chainsync.logged("identity mismatch")
            && chainsync.logged("refusing to index another network"),
        "the log names the mismatch"
    );
}

#[tokio::test]
async fn history_pruned_on_one_liteserver_is_read_from_another() {
    // The mainnet chain's 16 transactions; the first liteserver keeps only the newest few.
    let genesis = common::ton::now_unix_ms().to_string();
    let pruned = Liteserver::start(&[
        "--only",
        "none",
        "--genesis-unix-ms",
        &genesis,
        "--prune-below-lt",
        "28563246000001",
    ]);
    let archival = Liteserver::start(&["--only", "none", "--genesis-unix-ms", &genesis]);
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_ton_config(
        dir.path(),
        &db.url,
        &[pruned.port, archival.port],
        "poll_interval = \"200ms\"",
        &[Account {
            role: "deposit",
            address: common::ton::MAINNET_CHAIN_ACCOUNT.to_owned(),
            extra: String::new(),
        }],
    );
    let chainsync = Chainsync::run(&config);
    let stored: i64 = wait_for("the whole history", Duration::from_secs(30), || async {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ton_transactions WHERE chain = 'ton-test' AND account = $1",
        )
        .bind(common::ton::MAINNET_CHAIN_ACCOUNT)
        .fetch_one(&pool)
        .await
        .ok()?;
        (count == 16).then_some(count)
    })
    .await;
    assert_eq!(stored, 16);
    let text = reqwest::get(common::metrics_url(&config))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        text.lines().any(|l| l.starts_with(
            r#"chainsync_rpc_requests_total{chain="ton-test",method="get_transactions",outcome="lt_not_in_db"}"#
        ) && !l.ends_with(" 0")),
        "the pruned liteserver answered lt not in db"
    );
    // The real deposits of the mainnet account, each once (its first transaction deployed it).
    let deposits: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT lt) FROM ton_deposits WHERE chain = 'ton-test'")
            .fetch_one(&pool)
            .await
            .expect("deposits");
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ton_deposits WHERE chain = 'ton-test'")
            .fetch_one(&pool)
            .await
            .expect("deposits");
    assert!(deposits > 0 && deposits == total);
    drop(chainsync);
}
