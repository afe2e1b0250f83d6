//! `kill -9` at seeded points while traffic flows and reorgs (below and beyond the confirmation
//! threshold) happen: the killed instance ends with exactly the transfers, history and outbox
//! (ids and order) of an uninterrupted instance indexing the same chain. Real anvil, real
//! PostgreSQL, two `chainsync` processes.

mod common;

use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::sol_types::SolCall;
use chainsync::devnet::bindings::{StreamLockManager, TestToken};
use chainsync::devnet::{deploy, Deployment, Traffic};
use common::{contracts, indexed_block, wait_for, write_config, Anvil, Chainsync, TestDb};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::PgPool;

/// Anvil's 11th default account: the traffic generator never uses it, so its transactions can
/// be orphaned by a reorg without leaving the generator's nonces ahead of the chain.
const OUTSIDER: &str = "0xBcd4042DE499D14e55001CcbB24a551F3b954096";

async fn send(anvil: &Anvil, to: Address, input: Vec<u8>) {
    let tx = json!({"from": OUTSIDER, "to": format!("{to:#x}"), "data": format!("0x{}", hex::encode(input))});
    let hash: Value = anvil
        .rpc("eth_sendTransaction", json!([tx]))
        .await
        .expect("send");
    wait_for("a receipt", Duration::from_secs(20), || async {
        anvil
            .rpc("eth_getTransactionReceipt", json!([hash.clone()]))
            .await
            .ok()
            .filter(|r| !r.is_null())
    })
    .await;
}

/// The outsider mints, approves and opens `streams` streams: one block each.
async fn outsider_streams(anvil: &Anvil, deployment: &Deployment, streams: u64) {
    let outsider: Address = OUTSIDER.parse().expect("address");
    send(
        anvil,
        deployment.token,
        TestToken::mintCall {
            to: outsider,
            amount: U256::from(10u64).pow(U256::from(24u64)),
        }
        .abi_encode(),
    )
    .await;
    send(
        anvil,
        deployment.token,
        TestToken::approveCall {
            spender: deployment.manager,
            value: U256::MAX,
        }
        .abi_encode(),
    )
    .await;
    for i in 0..streams {
        let call = StreamLockManager::createStreamLockCall {
            recipient: common_recipient(),
            token: deployment.token,
            totalAmount: U256::from(100_000 + i),
            duration: U256::from(3_600u64),
        };
        send(anvil, deployment.manager, call.abi_encode()).await;
    }
}

fn common_recipient() -> Address {
    chainsync::devnet::accounts::dev_addresses()[1]
}

async fn wait_caught_up(anvil: &Anvil, pools: &[&PgPool]) {
    let head = anvil.block_number().await;
    for pool in pools {
        wait_for(
            &format!("indexed block >= {head}"),
            Duration::from_secs(60),
            || async { indexed_block(pool, "devnet").await.filter(|b| *b >= head) },
        )
        .await;
    }
}

async fn reorg_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM reorgs")
        .fetch_one(pool)
        .await
        .expect("reorgs")
}

/// Transfers, history and outbox rows as comparable text, in id / sequence order.
async fn snapshot(pool: &PgPool) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    let text = |sql: &'static str| async move {
        sqlx::query_scalar::<_, String>(sql)
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    (
        text(
            "SELECT concat_ws('|', id, kind, identity, status, stuck, failure_reason, encode(block_hash, 'hex'),
                              block_number, log_index, amount)
             FROM transfers ORDER BY id",
        )
        .await,
        text(
            "SELECT concat_ws('|', seq, transfer_id, from_status, to_status, stuck, reason, block_number)
             FROM transfer_history ORDER BY seq",
        )
        .await,
        // The payload minus its timestamp (when it was written is all that may differ).
        text("SELECT concat_ws('|', seq, topic, transfer_id, (payload - 'at')::text) FROM outbox ORDER BY seq").await,
        text(
            "SELECT concat_ws('|', encode(tx_hash, 'hex'), log_index, status, claimed_amount, used_count,
                              settled_amount, duplicate_lock_id)
             FROM streams ORDER BY tx_hash, log_index",
        )
        .await,
    )
}

/// Equal row lists, or a panic naming the first row that differs.
fn assert_same(what: &str, uninterrupted: &[String], killed: &[String]) {
    if let Some(i) =
        (0..uninterrupted.len().max(killed.len())).find(|&i| uninterrupted.get(i) != killed.get(i))
    {
        panic!(
            "{what} differ after kill -9 at row {i} ({} vs {} rows):\n  uninterrupted: {:?}\n  killed:        {:?}",
            uninterrupted.len(),
            killed.len(),
            uninterrupted.get(i),
            killed.get(i)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_leaves_the_same_transfers_history_and_outbox_as_an_uninterrupted_run() {
    let anvil = Anvil::start_with(&["--accounts", "11"]).await;
    let deployment = deploy(&anvil.rpc_url()).await.expect("deploy");
    let (db_a, db_b) = (TestDb::new().await, TestDb::new().await);
    let (pool_a, pool_b) = (db_a.pool().await, db_b.pool().await);
    // Clock-driven events (stuck, overdue) are numbered when the sweeper notices them, so they
    // are kept out of this comparison; everything chain-driven must match exactly.
    let extra = "confirmations = 3\noverdue_grace = \"87000h\"\n";
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let config_a = write_config(
        dir_a.path(),
        &anvil.rpc_url(),
        &db_a.url,
        &contracts(&deployment),
        extra,
    );
    let config_b = write_config(
        dir_b.path(),
        &anvil.rpc_url(),
        &db_b.url,
        &contracts(&deployment),
        extra,
    );
    let _a = Chainsync::run(&config_a);
    let mut b = Chainsync::run(&config_b);
    let mut traffic = Traffic::new(&anvil.rpc_url(), deployment.clone(), 9090)
        .await
        .expect("traffic");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut kills = 0;
    let mut kills_while_behind = 0;

    for round in 0..6 {
        // Instance B is killed, misses some traffic, restarts, and is killed again at a seeded
        // moment of its catch-up; then traffic goes on with both running.
        let (missed, after) = (rng.gen_range(20..40), rng.gen_range(5..20));
        let fraction: f64 = rng.gen_range(0.1..0.9);
        b.kill9();
        kills += 1;
        let resume_from = indexed_block(&pool_b, "devnet").await.unwrap_or(0);
        traffic
            .run_steps(1000.0, Some(missed), std::future::pending())
            .await
            .expect("traffic");
        let head = anvil.block_number().await;
        b = Chainsync::run(&config_b);
        // Killed once it has indexed a seeded fraction of what it missed.
        let kill_at = resume_from + ((head - resume_from) as f64 * fraction) as u64;
        let started = std::time::Instant::now();
        let indexed = loop {
            if let Some(indexed) = indexed_block(&pool_b, "devnet")
                .await
                .filter(|b| *b >= kill_at)
            {
                break indexed;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "instance B does not catch up"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        b.kill9();
        kills += 1;
        kills_while_behind += u32::from(indexed < head);
        b = Chainsync::run(&config_b);
        traffic
            .run_steps(1000.0, Some(after), std::future::pending())
            .await
            .expect("traffic");
        match round {
            // A reorg below the threshold: two confirming creations are orphaned.
            1 => {
                wait_caught_up(&anvil, &[&pool_a, &pool_b]).await;
                outsider_streams(&anvil, &deployment, 2).await;
                wait_caught_up(&anvil, &[&pool_a, &pool_b]).await;
                let before = reorg_count(&pool_a).await;
                anvil
                    .rpc("anvil_reorg", json!([2, []]))
                    .await
                    .expect("reorg");
                for pool in [&pool_a, &pool_b] {
                    wait_for("the reorg", Duration::from_secs(30), || async {
                        (reorg_count(pool).await > before).then_some(())
                    })
                    .await;
                }
            }
            // A reorg beyond the threshold: a confirmed, projected creation is orphaned.
            3 => {
                wait_caught_up(&anvil, &[&pool_a, &pool_b]).await;
                outsider_streams(&anvil, &deployment, 1).await;
                anvil.mine(3).await;
                wait_caught_up(&anvil, &[&pool_a, &pool_b]).await;
                let before = reorg_count(&pool_a).await;
                anvil
                    .rpc("anvil_reorg", json!([4, []]))
                    .await
                    .expect("reorg");
                for pool in [&pool_a, &pool_b] {
                    wait_for("the deep reorg", Duration::from_secs(30), || async {
                        (reorg_count(pool).await > before).then_some(())
                    })
                    .await;
                }
            }
            _ => {}
        }
    }
    anvil.mine(3).await;
    wait_caught_up(&anvil, &[&pool_a, &pool_b]).await;
    let head = anvil.block_number().await;
    for pool in [&pool_a, &pool_b] {
        wait_for(
            "everything deep enough to be confirmed",
            Duration::from_secs(30),
            || async {
                let confirmed: Option<i64> =
                    sqlx::query_scalar("SELECT confirmed_block FROM chain_status")
                        .fetch_one(pool)
                        .await
                        .ok()?;
                confirmed.filter(|c| *c as u64 >= head - 2)
            },
        )
        .await;
    }
    assert_eq!(kills, 12);
    assert!(
        kills_while_behind >= 2,
        "only {kills_while_behind} kills hit instance B while it was indexing"
    );

    let (transfers_a, history_a, outbox_a, streams_a) = snapshot(&pool_a).await;
    let (transfers_b, history_b, outbox_b, streams_b) = snapshot(&pool_b).await;
    assert!(transfers_a.len() > 50, "{} transfers", transfers_a.len());
    assert!(
        history_a.iter().any(|h| h.contains("|confirming|reorged|")),
        "the shallow reorg orphaned confirming transfers"
    );
    assert!(
        history_a.iter().any(|h| h.contains("|confirmed|reorged|")),
        "the deep reorg orphaned a confirmed transfer"
    );
    let deep: i64 = sqlx::query_scalar("SELECT deep_reorgs FROM chain_status")
        .fetch_one(&pool_b)
        .await
        .expect("status");
    assert_eq!(deep, 1);
    assert_same("transfers", &transfers_a, &transfers_b);
    assert_same("history", &history_a, &history_b);
    assert_same("outbox", &outbox_a, &outbox_b);
    assert_same("streams", &streams_a, &streams_b);
}
