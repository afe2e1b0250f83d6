//! Decoding real TON transactions: every value the fixtures expect, the 16-transaction account
//! chain, TEP-467 normalised hashes, and bad input turned into errors.
//!
//! Fixtures: `tests/fixtures/ton/mainnet` (real mainnet BoCs, expected values on which two
//! independent decoders agreed) and `tests/fixtures/ton/sandbox` (emulated wallet, bounce and
//! jetton scenarios from `devnet/ton-sandbox/generate.mjs`, with the same `expected` shape).

use std::path::Path;

use chainsync_actors::ton::decode::{
    decode_transaction, decode_transaction_base64, normalized_external_hash, AccountStatusKind,
    BouncePhase, ComputePhase, MessageKind, SkipReason, TonTransaction,
};
use serde_json::Value;
use ton::block_tlb::{CommonMsgInfo, Tx};
use ton::ton_core::cell::{BoC, TonCell};
use ton::ton_core::traits::tlb::TLB;
use ton::ton_core::types::tlb_core::{EitherRefLayout, MsgAddressExt, MsgAddressInt};

const ACCOUNT_CHAIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/ton/mainnet/tongo_account_chain.json"
);
const TON_CORE_SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/ton/mainnet/ton_core_spec.json"
);
const SANDBOX_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/ton/sandbox");

/// Keys of `expected` that describe where the fixture took a value from, not the transaction.
/// `account_workchain_source` is checked by [`check_workchain_source`] instead.
const PROVENANCE_KEYS: &[&str] = &["account_workchain_source"];
/// Keys our JSON may carry that the fixtures' decoders did not produce.
const EXTRA_KEYS: &[&str] = &["jetton", "normalized_hash"];
/// Details of a `nofunds` bounce phase: the sandbox fixtures' shape has them, the mainnet
/// fixture's single `nofunds` phase gives only its type.
const BOUNCE_DETAIL_KEYS: &[&str] = &["msg_size", "req_fwd_fees"];

fn extra_key_allowed(path: &str, key: &str) -> bool {
    EXTRA_KEYS.contains(&key)
        || (path.ends_with(".bounce_phase") && BOUNCE_DETAIL_KEYS.contains(&key))
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("reading {path}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("parsing {path}: {err}"))
}

fn text<'a>(value: &'a Value, key: &str, label: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{label}: `{key}` is not a string"))
}

/// The workchain of a raw `wc:hex` account.
fn workchain_of(account: &str) -> i32 {
    let (workchain, _) = account
        .split_once(':')
        .unwrap_or_else(|| panic!("account {account} is not wc:hex"));
    workchain
        .parse()
        .unwrap_or_else(|err| panic!("account {account}: workchain: {err}"))
}

/// The first difference between `expected` and `actual`, with its JSON path: a key of `expected`
/// missing or different in `actual`, or a key of `actual` the fixture does not have (other than
/// [`extra_key_allowed`]).
fn first_mismatch(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, expected_value) in expected {
                if PROVENANCE_KEYS.contains(&key.as_str()) {
                    continue;
                }
                let child = format!("{path}.{key}");
                let Some(actual_value) = actual.get(key) else {
                    return Some(format!("{child}: missing, expected {expected_value}"));
                };
                if let Some(mismatch) = first_mismatch(expected_value, actual_value, &child) {
                    return Some(mismatch);
                }
            }
            actual
                .iter()
                .find(|(key, _)| !expected.contains_key(*key) && !extra_key_allowed(path, key))
                .map(|(key, value)| format!("{path}.{key}: not in the fixture, decoded {value}"))
        }
        (Value::Array(expected), Value::Array(actual)) => {
            if expected.len() != actual.len() {
                return Some(format!(
                    "{path}: {} elements expected, decoded {}",
                    expected.len(),
                    actual.len()
                ));
            }
            expected
                .iter()
                .zip(actual)
                .enumerate()
                .find_map(|(index, (expected, actual))| {
                    first_mismatch(expected, actual, &format!("{path}[{index}]"))
                })
        }
        _ if expected == actual => None,
        _ => Some(format!("{path}: expected {expected}, decoded {actual}")),
    }
}

/// Decodes `entry.boc_base64` for the account of `entry.account` (or `entry.expected.account`)
/// and compares the JSON with `entry.expected`.
fn check_entry(label: &str, entry: &Value) -> TonTransaction {
    let expected = &entry["expected"];
    let account = entry["account"]
        .as_str()
        .unwrap_or_else(|| text(expected, "account", label));
    let boc = text(entry, "boc_base64", label);
    let tx = decode_transaction_base64(boc, workchain_of(account))
        .unwrap_or_else(|err| panic!("{label}: {err}"));
    let json =
        serde_json::to_value(&tx).unwrap_or_else(|err| panic!("{label}: serialising: {err}"));
    if let Some(mismatch) = first_mismatch(expected, &json, "$") {
        panic!("{label}: {mismatch}");
    }
    check_workchain_source(label, expected, &tx);
    check_identity(label, entry, &tx);
    tx
}

/// Sandbox entries also give the transaction's id and previous id next to `expected`: the typed
/// fields must agree with them.
fn check_identity(label: &str, entry: &Value, tx: &TonTransaction) {
    let pairs = [
        ("lt", tx.lt.to_string()),
        ("hash", hex::encode(tx.hash)),
        ("prev_lt", tx.prev_lt.to_string()),
        ("prev_hash", hex::encode(tx.prev_hash)),
    ];
    for (key, decoded) in pairs {
        if let Some(given) = entry[key].as_str() {
            assert_eq!(given, decoded, "{label}: {key}");
        }
    }
    if let Some(now) = entry["now"].as_u64() {
        assert_eq!(now, u64::from(tx.now), "{label}: now");
    }
}

/// Where the fixture says the account's workchain came from the in-message's destination, that
/// destination is the account we decoded for.
fn check_workchain_source(label: &str, expected: &Value, tx: &TonTransaction) {
    if expected["account_workchain_source"].as_str() == Some("in_msg.dest") {
        let dest = tx
            .in_msg
            .as_ref()
            .and_then(|msg| msg.dest.as_ref())
            .and_then(|dest| dest.account());
        assert_eq!(
            dest,
            Some(tx.account),
            "{label}: in_msg.dest is not the account"
        );
    }
}

fn chain_entries(fixture: &Value) -> &Vec<Value> {
    fixture["transactions"]
        .as_array()
        .expect("`transactions` is an array")
}

#[test]
fn account_chain_matches_expected_values() {
    let fixture = load(ACCOUNT_CHAIN);
    let entries = chain_entries(&fixture);
    assert_eq!(entries.len(), 16);
    for (index, entry) in entries.iter().enumerate() {
        check_entry(&format!("tongo_account_chain transactions[{index}]"), entry);
    }
    check_entry(
        "tongo_account_chain test_hash_transaction",
        &fixture["test_hash_transaction"],
    );
}

#[test]
fn ton_core_spec_matches_expected_values() {
    let fixture = load(TON_CORE_SPEC);
    let entries = chain_entries(&fixture);
    assert_eq!(entries.len(), 4);
    for (index, entry) in entries.iter().enumerate() {
        check_entry(&format!("ton_core_spec transactions[{index}]"), entry);
    }
}

#[test]
fn test_hash_transaction_has_the_root_hash_its_source_expects() {
    let fixture = load(ACCOUNT_CHAIN);
    let tx = check_entry("test_hash_transaction", &fixture["test_hash_transaction"]);
    assert_eq!(
        hex::encode(tx.hash),
        "269fc16f79a45ab565ef5f2eaadaca089f0254e0949aa8b9752c89fea5f865eb"
    );
    // The in-message body (op 0, empty text) sits in its own cell: the message hash is the
    // original cell's, not the one of a re-encoding that would move it inline.
    let in_msg = tx.in_msg.expect("in_msg");
    assert_eq!((in_msg.op, in_msg.comment.as_deref()), (Some(0), Some("")));
}

#[test]
fn account_chain_links_through_prev_hashes() {
    let fixture = load(ACCOUNT_CHAIN);
    let account = text(&fixture["chain_check"], "account", "chain_check");
    let chain: Vec<TonTransaction> = chain_entries(&fixture)
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            decode_transaction_base64(text(entry, "boc_base64", "chain"), workchain_of(account))
                .unwrap_or_else(|err| panic!("transactions[{index}]: {err}"))
        })
        .collect();
    for (index, pair) in chain.windows(2).enumerate() {
        let (newer, older) = (&pair[0], &pair[1]);
        assert_eq!(
            (newer.prev_lt, hex::encode(newer.prev_hash)),
            (older.lt, hex::encode(older.hash)),
            "transactions[{index}].prev must be transactions[{}]",
            index + 1
        );
        assert!(
            newer.lt > older.lt && newer.now >= older.now,
            "transactions[{index}] is not newer than the next"
        );
    }
    for tx in &chain {
        assert_eq!(tx.account.to_string(), account);
    }
    let first = chain.last().expect("16 transactions");
    assert_eq!(
        (first.prev_lt, first.prev_hash),
        (0, [0; 32]),
        "the oldest is the account's first"
    );
    assert_eq!(first.orig_status, AccountStatusKind::NonExist);
}

#[test]
fn hex_bytes_and_base64_decode_alike() {
    let fixture = load(ACCOUNT_CHAIN);
    for (index, entry) in chain_entries(&fixture).iter().enumerate() {
        let label = format!("transactions[{index}]");
        let bytes = hex::decode(text(entry, "boc_hex_as_in_source", &label)).expect("hex");
        let from_bytes =
            decode_transaction(&bytes, 0).unwrap_or_else(|err| panic!("{label}: {err}"));
        let from_base64 =
            decode_transaction_base64(text(entry, "boc_base64", &label), 0).expect("base64");
        assert_eq!(from_bytes, from_base64, "{label}");
    }
}

#[test]
fn typed_fields_tell_deposits_bounces_and_failures_apart() {
    let fixture = load(ACCOUNT_CHAIN);
    let entries = chain_entries(&fixture);
    let decode = |index: usize| {
        decode_transaction_base64(text(&entries[index], "boc_base64", "chain"), 0).expect("decodes")
    };

    // A plain deposit: internal in-message from a source, not bounced, VM success, actions ok.
    let deposit = decode(0);
    let in_msg = deposit.in_msg.as_ref().expect("in_msg");
    assert_eq!(
        (in_msg.kind, in_msg.value, in_msg.bounced),
        (MessageKind::Internal, 976_220_333, false)
    );
    assert!(in_msg.src.is_some());
    assert!(!deposit.aborted());
    assert_eq!(
        deposit.compute(),
        Some(&ComputePhase::Vm {
            success: true,
            msg_state_used: false,
            account_activated: false,
            gas_fees: 991_000,
            gas_used: 991,
            gas_limit: 976_220,
            gas_credit: None,
            mode: 0,
            exit_code: 0,
            exit_arg: None,
            vm_steps: 29,
        })
    );
    assert_eq!(deposit.action_success(), Some(true));
    assert_eq!(deposit.bounce(), None);

    // A comment continuing in a referenced cell.
    let spam = decode(8);
    let in_msg = spam.in_msg.as_ref().expect("in_msg");
    assert_eq!(in_msg.body_refs, 1);
    assert!(in_msg
        .comment
        .as_deref()
        .is_some_and(|text| text.ends_with("double the amount.")));

    // Too little value to buy gas: aborted, compute skipped, no action, bounce without funds.
    let no_gas = decode(12);
    assert!(no_gas.aborted());
    assert_eq!(
        no_gas.compute(),
        Some(&ComputePhase::Skipped {
            reason: SkipReason::NoGas
        })
    );
    assert_eq!(no_gas.action_success(), None);
    assert!(matches!(no_gas.bounce(), Some(BouncePhase::NoFunds { .. })));

    // A non-bounceable transfer to an account that does not exist yet: aborted, value stays.
    let first = decode(15);
    assert!(first.aborted());
    assert_eq!(
        first.compute(),
        Some(&ComputePhase::Skipped {
            reason: SkipReason::NoState
        })
    );
    assert_eq!(first.in_msg.as_ref().map(|msg| msg.bounce), Some(false));
}

/// External-in messages of the `@ton/core` spec transactions, with their decoded form.
fn external_in_messages() -> Vec<(
    String,
    ton::block_tlb::Msg,
    chainsync_actors::ton::decode::TonMessage,
)> {
    let fixture = load(TON_CORE_SPEC);
    chain_entries(&fixture)
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| {
            let label = format!("ton_core_spec transactions[{index}]");
            let boc = text(entry, "boc_base64", &label);
            let msg = Tx::from_boc_base64(boc)
                .expect("parses")
                .msgs
                .in_msg
                .clone()?;
            let account = text(&entry["expected"], "account", &label);
            let decoded = decode_transaction_base64(boc, workchain_of(account))
                .expect("decodes")
                .in_msg?;
            matches!(msg.info, CommonMsgInfo::ExtIn(_)).then_some((label, msg, decoded))
        })
        .collect()
}

/// The TEP-467 cell built bit by bit: `ext_in_msg_info$10 src:addr_none$00 dest:MsgAddressInt
/// import_fee:(VarUInteger 16 = 0) init:nothing$0 body:right$1 ^X`.
fn tep467_cell_by_hand(dest: &MsgAddressInt, body: &TonCell) -> TonCell {
    let MsgAddressInt::Std(dest) = dest else {
        panic!("fixtures only have addr_std destinations")
    };
    assert!(dest.anycast.is_none(), "fixtures have no anycast");
    let mut builder = TonCell::builder();
    builder.write_num(&0b10u8, 2).expect("ext_in_msg_info$10");
    builder.write_num(&0b00u8, 2).expect("src addr_none$00");
    builder
        .write_num(&0b100u8, 3)
        .expect("dest addr_std$10, anycast nothing$0");
    builder
        .write_num(&dest.workchain, 8)
        .expect("workchain_id:int8");
    builder
        .write_bits(dest.address.as_slice(), 256)
        .expect("address:bits256");
    builder
        .write_num(&0u8, 4)
        .expect("import_fee: zero-length VarUInteger 16");
    builder.write_bit(false).expect("init nothing$0");
    builder.write_bit(true).expect("body right$1");
    builder.write_ref(body.clone()).expect("^body");
    builder.build().expect("normalised cell")
}

#[test]
fn normalized_external_hash_follows_tep_467() {
    let messages = external_in_messages();
    assert_eq!(
        messages.len(),
        3,
        "the spec has three external-in transactions"
    );
    for (label, msg, decoded) in messages {
        let CommonMsgInfo::ExtIn(info) = &msg.info else {
            unreachable!("filtered")
        };
        let normalized =
            normalized_external_hash(&msg).unwrap_or_else(|err| panic!("{label}: {err}"));
        assert_eq!(
            normalized_external_hash(&msg).expect("again"),
            normalized,
            "{label}: deterministic"
        );
        assert_eq!(
            decoded.normalized_hash,
            Some(normalized),
            "{label}: decoded normalized_hash"
        );

        let by_hand = tep467_cell_by_hand(&info.dst, &msg.body.value);
        assert_eq!(
            by_hand.hash().expect("hash").as_slice(),
            normalized.as_slice(),
            "{label}: by hand"
        );
        // Without anycast the crate's own normalisation agrees.
        let crate_hash = msg.cell_hash_normalized().expect("crate normalisation");
        assert_eq!(
            crate_hash.as_slice(),
            normalized.as_slice(),
            "{label}: ton crate"
        );

        let already_normal = info.src == MsgAddressExt::NONE
            && info.import_fee.to_u128() == 0
            && msg.init.is_none()
            && msg.body.layout == EitherRefLayout::ToRef;
        assert_eq!(
            normalized == decoded.hash,
            already_normal,
            "{label}: the normalised hash differs from the raw one exactly when the layout is not normal"
        );
    }
}

#[test]
fn normalized_external_hash_differs_for_a_repacked_message() {
    // The addr_extern source of the last spec transaction is what a relay may set: normalising
    // removes it, and a message differing only in src normalises to the same hash.
    let (label, msg, decoded) = external_in_messages()
        .pop()
        .expect("an external-in message");
    let CommonMsgInfo::ExtIn(info) = &msg.info else {
        unreachable!("filtered")
    };
    assert!(
        matches!(info.src, MsgAddressExt::Extern(_)),
        "{label}: src is addr_extern"
    );
    assert_ne!(decoded.normalized_hash, Some(decoded.hash));
    let mut repacked = msg.clone();
    if let CommonMsgInfo::ExtIn(info) = &mut repacked.info {
        info.src = MsgAddressExt::NONE;
    }
    assert_ne!(
        repacked.cell_hash().expect("hash").as_slice(),
        decoded.hash.as_slice()
    );
    assert_eq!(
        normalized_external_hash(&repacked).expect("hash"),
        normalized_external_hash(&msg).expect("hash")
    );
}

#[test]
fn normalized_external_hash_refuses_internal_messages() {
    let fixture = load(ACCOUNT_CHAIN);
    let tx = Tx::from_boc_base64(text(&chain_entries(&fixture)[0], "boc_base64", "chain"))
        .expect("parses");
    let msg = tx.msgs.in_msg.as_ref().expect("in_msg");
    let err = normalized_external_hash(msg).expect_err("internal");
    assert!(
        err.to_string().contains("not for internal messages"),
        "{err}"
    );
}

/// A small deterministic generator, so a failure reproduces.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn truncated_boc_is_an_error_naming_the_bag_of_cells() {
    let fixture = load(ACCOUNT_CHAIN);
    let bytes = hex::decode(text(
        &chain_entries(&fixture)[0],
        "boc_hex_as_in_source",
        "chain",
    ))
    .expect("hex");
    for len in [0, 1, 4, 10, bytes.len() / 2, bytes.len() - 1] {
        let err = decode_transaction(&bytes[..len], 0).expect_err("truncated BoC must not decode");
        let message = err.to_string();
        assert_eq!(err.kind(), "ton_boc", "{len} bytes: {message}");
        assert!(!err.is_retryable());
        assert!(
            message.contains(&format!(" {len} bytes)"))
                && message.contains("is not a bag of cells"),
            "{len} bytes: {message}"
        );
    }
}

#[test]
fn random_bytes_are_errors_not_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15;
    let magic = [0xb5, 0xee, 0x9c, 0x72];
    for round in 0..2000 {
        let len = (xorshift(&mut state) % 300) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
        if round % 2 == 0 && bytes.len() >= magic.len() {
            // Past the magic number, so that the header and cell parsers see the noise too.
            bytes[..magic.len()].copy_from_slice(&magic);
        }
        let err = decode_transaction(&bytes, 0).expect_err("random bytes must not decode");
        assert!(
            err.to_string().contains("is not a bag of cells"),
            "round {round}: {err}"
        );
    }
    let err = decode_transaction_base64("not base64!", 0).expect_err("not base64");
    assert!(err.to_string().contains("base64"), "{err}");
}

#[test]
fn a_cell_that_is_not_a_transaction_is_an_error_naming_the_part() {
    let mut builder = TonCell::builder();
    builder.write_num(&0xdead_beef_u32, 32).expect("bits");
    let boc = BoC::new(builder.build().expect("cell"))
        .to_bytes(false)
        .expect("boc");
    let err = decode_transaction(&boc, 0).expect_err("not a transaction");
    assert_eq!(err.kind(), "ton_tlb");
    assert!(err.to_string().contains("cannot read Transaction"), "{err}");
}

#[test]
fn sandbox_scenarios_decode() {
    let dir = Path::new(SANDBOX_DIR);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("reading {SANDBOX_DIR}: {err}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{SANDBOX_DIR} exists but holds no .json fixture"
    );
    for file in files {
        let name = file.display().to_string();
        let fixture = load(&name);
        let steps = fixture["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: `steps` is not an array"));
        let mut checked = 0;
        for (step_index, step) in steps.iter().enumerate() {
            let transactions = step["transactions"].as_array().unwrap_or_else(|| {
                panic!("{name} steps[{step_index}]: `transactions` is not an array")
            });
            for (index, entry) in transactions.iter().enumerate() {
                check_entry(
                    &format!("{name} steps[{step_index}].transactions[{index}]"),
                    entry,
                );
                checked += 1;
            }
        }
        assert!(checked > 0, "{name}: no transaction to check");
    }
}
