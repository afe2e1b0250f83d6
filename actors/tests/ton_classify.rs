//! The payment rules of `ton::classify` on real emulator transactions (`tests/fixtures/ton/sandbox`):
//! a bounce is three linked transactions, a non-bounceable transfer to an uninitialised account is
//! delivered, jetton deposits are read from `internal_transfer` with and without a notification,
//! comments and memos are matched.

use chainsync_actors::ton::classify::{
    bounced_message, delivery, hot_wallet_tx, jetton_deposit, ton_deposit, Delivery,
};
use chainsync_actors::ton::decode::{decode_transaction_base64, TonAccount, TonTransaction};
use serde_json::Value;

fn scenario(name: &str) -> Value {
    let path = format!(
        "{}/../tests/fixtures/ton/sandbox/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("scenario")).expect("json")
}

fn account(scenario: &Value, label: &str) -> String {
    scenario["accounts"][label]
        .as_str()
        .expect("label")
        .to_owned()
}

fn parse(raw: &str) -> TonAccount {
    let (wc, hex_id) = raw.split_once(':').expect("raw address");
    TonAccount {
        workchain: wc.parse().expect("workchain"),
        address: hex::decode(hex_id)
            .expect("hex")
            .try_into()
            .expect("32 bytes"),
    }
}

/// The decoded transactions of `account`, oldest first.
fn transactions_of(scenario: &Value, account: &str) -> Vec<TonTransaction> {
    scenario["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .flat_map(|s| s["transactions"].as_array().expect("txs").iter())
        .filter(|tx| tx["account"] == account)
        .map(|tx| {
            decode_transaction_base64(tx["boc_base64"].as_str().expect("boc"), 0).expect("decodes")
        })
        .collect()
}

#[test]
fn a_bounce_is_three_linked_transactions() {
    let file = scenario("bounce");
    let hot = transactions_of(&file, &account(&file, "hot_wallet"));
    let dest = transactions_of(&file, &account(&file, "bounce_dest"));
    let destination = parse(&account(&file, "bounce_dest"));
    let send = hot
        .iter()
        .map(hot_wallet_tx)
        .find(|w| w.edges.iter().any(|e| e.destination == destination))
        .expect("the hot wallet sends to the uninitialised account");
    let edge = send
        .edges
        .iter()
        .find(|e| e.destination == destination)
        .expect("edge");
    assert!(edge.bounce);
    let consumed = dest
        .iter()
        .find(|tx| tx.in_msg.as_ref().is_some_and(|m| m.hash == edge.msg_hash))
        .expect("the destination consumes the message");
    assert!(consumed.aborted());
    assert_eq!(delivery(consumed), Delivery::Bounced);
    assert_eq!(
        delivery(consumed).failure_reason().as_deref(),
        Some("bounced")
    );
    let back = bounced_message(consumed).expect("a bounced message goes back");
    let returned = hot
        .iter()
        .map(hot_wallet_tx)
        .find(|w| w.bounce_back == Some(back))
        .expect("the hot wallet receives the bounce");
    assert!(returned.edges.is_empty());
}

#[test]
fn a_non_bounceable_transfer_to_an_uninitialised_account_is_delivered() {
    let file = scenario("nonbounce_uninit");
    let dest = transactions_of(&file, &account(&file, "nonbounce_dest"));
    assert_eq!(dest.len(), 1);
    assert!(dest[0].aborted(), "aborted: the account has no code");
    assert_eq!(
        delivery(&dest[0]),
        Delivery::Delivered,
        "but the value stays"
    );
    assert!(bounced_message(&dest[0]).is_none());
}

#[test]
fn jetton_deposits_with_and_without_forward_ton() {
    let file = scenario("jetton");
    let owner = parse(&account(&file, "jetton_owner"));
    let wallet = transactions_of(&file, &account(&file, "jetton_owner_jetton_wallet"));
    let deposits: Vec<_> = wallet
        .iter()
        .filter_map(|tx| jetton_deposit(tx, &owner))
        .collect();
    assert_eq!(deposits.len(), 2);
    assert!(deposits.iter().all(|d| d.delivery == Delivery::Delivered));
    assert!(deposits[0].notified && deposits[0].forward_ton_amount == 50_000_000);
    assert_eq!(deposits[0].comment.as_deref(), Some("order-2001"));
    assert!(!deposits[1].notified && deposits[1].forward_ton_amount == 0);
    assert_eq!(deposits[1].comment, None);
    assert!(
        deposits[1].amount > deposits[0].amount,
        "250 jettons after 100"
    );
    assert_eq!(
        deposits[0].sender.as_deref(),
        Some(account(&file, "jetton_sender").as_str())
    );
    // The owner's own transaction (the notification) is not a TON deposit to credit as jettons.
    let owner_txs = transactions_of(&file, &account(&file, "jetton_owner"));
    assert!(owner_txs
        .iter()
        .all(|tx| jetton_deposit(tx, &owner).is_none()));
}

#[test]
fn deposits_carry_their_comment_and_memo_match() {
    let file = scenario("wallet_comments");
    let txs = transactions_of(&file, &account(&file, "deposit"));
    let deposits: Vec<_> = txs
        .iter()
        .filter_map(|tx| ton_deposit(tx, Some("order-")))
        .collect();
    assert_eq!(
        deposits.len(),
        7,
        "the funding that deploys it, then six payments"
    );
    let matched: Vec<(Option<&str>, Option<bool>)> = deposits
        .iter()
        .map(|d| {
            (
                d.comment.as_deref().map(|c| &c[..c.len().min(10)]),
                d.memo_matched,
            )
        })
        .collect();
    assert_eq!(
        matched,
        vec![
            (None, Some(false)),
            (Some("order-1001"), Some(true)),
            (Some("order-1002"), Some(true)),
            (Some("hello"), Some(false)),
            (None, Some(false)),
            (Some("order-1003"), Some(true)),
            (Some("order-1004"), Some(true)),
        ]
    );
    assert!(deposits.iter().all(|d| d.delivery == Delivery::Delivered));
    assert_eq!(deposits[0].amount, 500_000_000);
    assert_eq!(deposits[1].amount, 1_500_000_000);
    // Without a memo nothing is matched or unmatched.
    assert!(txs
        .iter()
        .filter_map(|tx| ton_deposit(tx, None))
        .all(|d| d.memo_matched.is_none()));
}

#[test]
fn one_external_message_with_three_payouts_is_three_edges() {
    let file = scenario("outgoing");
    let hot = transactions_of(&file, &account(&file, "hot_wallet"));
    let batch = hot
        .iter()
        .map(hot_wallet_tx)
        .find(|w| w.edges.len() == 3)
        .expect("the three-message external");
    assert!(batch.external_hash.is_some());
    assert_eq!(batch.delivery, Some(Delivery::Delivered));
    let values: Vec<u128> = batch.edges.iter().map(|e| e.value).collect();
    assert_eq!(values, vec![100_000_000, 200_000_000, 300_000_000]);
}
