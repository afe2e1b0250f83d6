//! The loopback liteserver, reached through chainsync's lite client: the 16-transaction mainnet
//! chain is paged backwards by `(lt, hash)` and its prev-transaction links hold; errors a real
//! liteserver gives are given; a liteserver that is out of sync, gone, or answers with a
//! transaction list that skips a transaction is rotated away from.

mod common;

use std::time::Duration;

use chainsync_actors::ton::client::{TonClient, TxId};
use common::ton::{global_config, Liteserver, MAINNET_CHAIN_ACCOUNT};
use ton::block_tlb::Tx;
use ton::ton_core::traits::tlb::TLB;
use ton::ton_core::types::TonAddress;

fn fixture_chain() -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(
        common::repo_root().join("tests/fixtures/ton/mainnet/tongo_account_chain.json"),
    )
    .expect("fixture");
    let file: serde_json::Value = serde_json::from_str(&text).expect("json");
    file["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .map(|tx| {
            (
                tx["expected"]["lt"]
                    .as_str()
                    .expect("lt")
                    .parse()
                    .expect("u64"),
                tx["expected"]["hash"].as_str().expect("hash").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn mainnet_chain_is_paged_backwards_through_the_lite_client() {
    let server = Liteserver::start(&["--block-interval", "500ms"]);
    let client = TonClient::new(
        "ton-test",
        &global_config(&[server.port]),
        Duration::from_secs(5),
    )
    .expect("client");
    let info = client.masterchain_info().await.expect("masterchain info");
    assert!(info.last.seqno >= 1, "masterchain starts at block 1");
    let account: TonAddress = MAINNET_CHAIN_ACCOUNT.parse().expect("address");
    let last = client
        .last_transaction(&info.last, &account)
        .await
        .expect("account state")
        .expect("the account has transactions");
    let expected = fixture_chain();
    assert_eq!(
        last.lt, expected[0].0,
        "last transaction lt from the state proof"
    );
    assert_eq!(
        hex::encode(last.hash),
        expected[0].1,
        "last transaction hash"
    );

    // Page backwards in pages of 5 following prev links, as the listener does.
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut next = Some(last);
    while let Some(from) = next {
        let page = client.transactions(&account, from, 5).await.expect("page");
        assert!(!page.is_empty() && page.len() <= 5);
        assert_eq!(
            page[0].id, from,
            "a page starts at the requested transaction"
        );
        next = None;
        for raw in &page {
            let tx = Tx::from_boc(raw.boc.clone()).expect("transaction parses");
            assert_eq!(tx.lt, raw.id.lt);
            if let Some((previous_lt, _)) = seen.last() {
                assert!(*previous_lt > raw.id.lt, "newest first");
            }
            seen.push((raw.id.lt, hex::encode(raw.id.hash)));
            next = (tx.prev_tx_lt != 0).then(|| TxId {
                lt: tx.prev_tx_lt,
                hash: *tx.prev_tx_hash.as_slice_sized(),
            });
        }
    }
    assert_eq!(
        seen, expected,
        "all 16 transactions, newest first, by prev links"
    );

    // A transaction the server does not have: the real liteserver's wording.
    let missing = client.with_max_attempts(1);
    let error = missing
        .transactions(
            &account,
            TxId {
                lt: 1,
                hash: [0; 32],
            },
            5,
        )
        .await
        .expect_err("unknown lt");
    assert!(error.to_string().contains("lt not in db"), "{error}");
    // An account that never existed has no last transaction.
    let nobody: TonAddress = format!("0:{}", "ab".repeat(32)).parse().expect("address");
    assert_eq!(
        missing
            .last_transaction(&info.last, &nobody)
            .await
            .expect("state"),
        None
    );
}

#[tokio::test]
async fn out_of_sync_and_dead_liteservers_are_rotated_away_from() {
    let genesis = common::ton::now_unix_ms().to_string();
    let stale = Liteserver::start(&["--not-ready", "--genesis-unix-ms", &genesis]);
    let mut doomed = Liteserver::start(&["--genesis-unix-ms", &genesis]);
    let healthy = Liteserver::start(&["--genesis-unix-ms", &genesis]);
    let client = TonClient::new(
        "ton-test",
        &global_config(&[stale.port, doomed.port, healthy.port]),
        Duration::from_secs(2),
    )
    .expect("client");
    // First attempt hits the out-of-sync server, the next one answers.
    let info = client
        .masterchain_info()
        .await
        .expect("rotated past not-ready");
    let account: TonAddress = MAINNET_CHAIN_ACCOUNT.parse().expect("address");
    client
        .last_transaction(&info.last, &account)
        .await
        .expect("served by the second liteserver");
    // The serving liteserver dies: connections drop, the client moves on to the third.
    doomed.kill();
    let last = client
        .last_transaction(&info.last, &account)
        .await
        .expect("served by the third liteserver")
        .expect("transactions");
    assert_eq!(last.lt, fixture_chain()[0].0);
    let metrics = chainsync_actors::metrics::render();
    assert!(
        metrics.contains(r#"chainsync_rpc_requests_total{chain="ton-test",method="get_masterchain_info",outcome="not_ready"} 1"#),
        "the not-ready answer is counted:\n{}",
        metrics.lines().filter(|l| l.contains("ton-test")).collect::<Vec<_>>().join("\n")
    );
}

#[tokio::test]
async fn a_transaction_list_with_a_gap_is_refused_and_asked_again_elsewhere() {
    let genesis = common::ton::now_unix_ms().to_string();
    let broken = Liteserver::start(&["--broken-lists", "--genesis-unix-ms", &genesis]);
    let healthy = Liteserver::start(&["--genesis-unix-ms", &genesis]);
    let account: TonAddress = MAINNET_CHAIN_ACCOUNT.parse().expect("address");
    let expected = fixture_chain();
    let newest = TxId {
        lt: expected[0].0,
        hash: hex::decode(&expected[0].1)
            .expect("hex")
            .try_into()
            .expect("32 bytes"),
    };

    // Alone, the faulty liteserver's list is refused, naming what is wrong.
    let only_broken = TonClient::new(
        "ton-gap-alone",
        &global_config(&[broken.port]),
        Duration::from_secs(2),
    )
    .expect("client")
    .with_max_attempts(1);
    let error = only_broken
        .transactions(&account, newest, 16)
        .await
        .expect_err("a list with a gap");
    let message = error.to_string();
    assert!(
        message.contains("does not follow the prev links") && message.contains(&expected[1].1),
        "{message}"
    );

    // With a healthy liteserver next in line, the whole chain comes back from it.
    let client = TonClient::new(
        "ton-gap",
        &global_config(&[broken.port, healthy.port]),
        Duration::from_secs(2),
    )
    .expect("client");
    let page = client
        .transactions(&account, newest, 16)
        .await
        .expect("answered by the healthy liteserver");
    let got: Vec<(u64, String)> = page
        .iter()
        .map(|raw| (raw.id.lt, hex::encode(raw.id.hash)))
        .collect();
    assert_eq!(got, expected, "all 16 transactions, none skipped");
    let metrics = chainsync_actors::metrics::render();
    assert!(
        metrics.contains(r#"chainsync_rpc_requests_total{chain="ton-gap",method="get_transactions",outcome="malformed"} 1"#),
        "the refused list is counted as malformed:\n{}",
        metrics.lines().filter(|l| l.contains("ton-gap")).collect::<Vec<_>>().join("\n")
    );
}
