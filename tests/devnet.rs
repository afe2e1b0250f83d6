//! The devnet contracts, deployed and driven on a real anvil, emit every event of the stream
//! contracts' reference with the reference topics, and with the parameters the transactions sent.
//! Events are decoded with the indexer's own types (`chainsync_actors::contracts`), not with the
//! devnet bindings.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use alloy::primitives::{address, keccak256, Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log, Transaction};
use alloy::sol_types::{SolCall, SolEvent};
use chainsync::devnet::bindings::{
    Factory, Producer, StreamLockManager, StreamLockManagerV2, TestToken,
};
use chainsync::devnet::{deploy, generate_events, Deployment, Traffic};
use chainsync_actors::contracts as reference;

/// topic0 values as printed in the reference (abbreviated ones as prefix…suffix). Events the
/// reference lists without a topic are checked against the hash of their reference signature.
const REFERENCE_TOPICS: &[(&str, &str)] = &[
    (
        "StreamLockCreated",
        "0x11a590d593e125b56eb12d8a297e3fdefb15812688887ef864fd31f249a8f347",
    ),
    (
        "StreamSettled",
        "0xb7a122c91f16fa654638c387f6ca3e0fc3f3761636f3d160594daef31b9f21c3",
    ),
    (
        "PartialClaim",
        "0x9e8ceb6f00b73351f43a9236a5a2bde0a6964dc4c84e45015910e4520ab6a754",
    ),
    (
        "ProducerBatchClaim",
        "0x16497129e5be21b97f674901180c561ee1fcb7a099b6bc866b6768dd06da85b8",
    ),
    (
        "EmergencyWithdraw",
        "0xd3e69353709a7dcaab28b44353b592c552cd797c95ffb523f924c0a16b4a2c2b",
    ),
    (
        "CustomerPlanStreamCreated",
        "0x6f7f86026a2db29034a936afdeca9a9560933c6bcde586afaa025210eff99c96",
    ),
    (
        "StreamUsageRecorded",
        "0x874a913310c7a36664faf7058f78914ce14858fe66f54068b90451728a7e660b",
    ),
    (
        "BalanceDeposited",
        "0x854a1caa46a67abd91fff206c0a8a45f6fdc9f7cb7fcfb8ef5646daaa7f1574c",
    ),
    (
        "BalanceLocked",
        "0xd328a1e0b5bc70925c677287d5714db1f3b24cfd146eb3250d9c389fcfb45f23",
    ),
    (
        "BalanceUnlocked",
        "0xe58e3512db5b7a297b8feda2d4e82f76491b0cedbd0115e27f14ba79aadb3796",
    ),
    (
        "BalanceWithdrawn",
        "0x50630162af2fe1b3638257703351230fbe331ec0b7368aba0eb78f2dabd03c0c",
    ),
    (
        "LogProducer",
        "0x5721aa54391c71aa6f35790186337ff5a1a095b790624060465364d5d431b52f",
    ),
    ("Paused", "0x62e78cea…a258"),
    ("Unpaused", "0x5db9ee0a…73aa"),
    ("Upgraded", "0xbc7cd75a…2d3b"),
    ("CustomerPlanWithStreamCreated", "0xb066f251…23fe"),
    ("Initialized", "Initialized(uint64)"),
    (
        "OwnershipTransferred",
        "OwnershipTransferred(address,address)",
    ),
    (
        "StreamUsageValidated",
        "StreamUsageValidated(uint256,bytes32,address,bool)",
    ),
    ("LogAddPlan", "LogAddPlan(uint256,address,string,uint8)"),
];

fn matches_reference(topic0: B256, reference: &str) -> bool {
    let hex = format!("{topic0:#x}");
    if let Some((prefix, suffix)) = reference.split_once('…') {
        hex.starts_with(prefix) && hex.ends_with(suffix)
    } else if reference.starts_with("0x") {
        hex == reference
    } else {
        topic0 == keccak256(reference.as_bytes())
    }
}

/// The first anvil account, deployer and owner of everything.
const DEPLOYER: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

/// Deployment addresses on a fresh anvil (also in `config/default.toml`).
const FRESH_TOKEN: Address = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
const FRESH_MANAGER: Address = address!("9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0");
const FRESH_PRODUCER_STORAGE: Address = address!("Cf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9");

async fn connect(url: &str) -> DynProvider {
    ProviderBuilder::new()
        .connect(url)
        .await
        .expect("connect to anvil")
        .erased()
}

async fn logs_of(provider: &DynProvider, addresses: Vec<Address>) -> Vec<Log> {
    provider
        .get_logs(&Filter::new().address(addresses).from_block(0))
        .await
        .expect("eth_getLogs")
}

/// Transactions by hash, fetched once each.
struct Transactions<'a> {
    provider: &'a DynProvider,
    cache: HashMap<B256, Transaction>,
}

impl Transactions<'_> {
    async fn of(&mut self, log: &Log) -> &Transaction {
        let hash = log.transaction_hash.expect("mined log has a tx hash");
        if !self.cache.contains_key(&hash) {
            let tx = self
                .provider
                .get_transaction_by_hash(hash)
                .await
                .expect("eth_getTransactionByHash")
                .expect("transaction exists");
            self.cache.insert(hash, tx);
        }
        &self.cache[&hash]
    }
}

fn sender_of(tx: &Transaction) -> Address {
    tx.inner.signer()
}

fn input_of(tx: &Transaction) -> &[u8] {
    use alloy::consensus::Transaction as _;
    tx.inner.input()
}

fn to_of(tx: &Transaction) -> Option<Address> {
    use alloy::consensus::Transaction as _;
    tx.inner.to()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_emits_every_reference_event_with_the_parameters_sent() {
    let anvil = common::Anvil::start().await;
    let url = anvil.rpc_url();
    let deployment = deploy(&url).await.expect("deploy the devnet contracts");

    // A fresh anvil always yields the same addresses.
    assert_eq!(deployment.deployer, DEPLOYER);
    assert_eq!(deployment.token, FRESH_TOKEN);
    assert_eq!(deployment.manager, FRESH_MANAGER);
    assert_eq!(deployment.producer_storage, FRESH_PRODUCER_STORAGE);
    assert_eq!(deployment.producers.len(), 3);

    let mut traffic = Traffic::new(&url, deployment.clone(), 7)
        .await
        .expect("connect the traffic generator");
    let mut expected_reverts = 0;
    let mut mix: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..300 {
        let report = traffic.step().await.expect("traffic step");
        *mix.entry(report.operation.to_string()).or_default() += 1;
        assert_eq!(
            report.unexpected_reverts(),
            0,
            "step {} ({}) did not end as intended: {:?}",
            report.step,
            report.operation,
            report.transactions
        );
        expected_reverts += report
            .transactions
            .iter()
            .filter(|tx| tx.expected_revert)
            .count();
    }
    assert!(
        expected_reverts > 0,
        "the mix includes transactions that revert"
    );
    eprintln!("operations: {mix:?}, totals: {:?}", traffic.totals());

    let provider = connect(&url).await;
    let clones = traffic.producer_clones();
    assert!(
        clones.len() > deployment.producers.len(),
        "producers were registered during the run"
    );
    let mut watched = vec![deployment.manager, deployment.producer_storage];
    watched.extend(&clones);
    let logs = logs_of(&provider, watched).await;
    let mut transactions = Transactions {
        provider: &provider,
        cache: HashMap::new(),
    };

    // Every log decodes with the indexer's types, and every reference event shows up.
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for log in &logs {
        match reference::decode_log(&log.inner) {
            reference::DecodeOutcome::Decoded(event) => *seen.entry(event.name).or_default() += 1,
            other => panic!("log {log:?} did not decode: {other:?}"),
        }
    }
    for name in reference::EVENT_NAMES {
        assert!(seen.contains_key(name), "no {name} log in {seen:?}");
    }
    for (name, topic) in REFERENCE_TOPICS {
        let log = logs
            .iter()
            .find(|log| {
                matches!(reference::decode_log(&log.inner),
                reference::DecodeOutcome::Decoded(event) if event.name == *name)
            })
            .unwrap_or_else(|| panic!("a {name} log"));
        let topic0 = log.topic0().copied().unwrap_or_default();
        assert!(
            matches_reference(topic0, topic),
            "{name}: topic0 {topic0:#x} is not the reference {topic}"
        );
    }

    // Indexed (and other) parameters are what the transactions sent.
    let mut lock_ids_created: HashMap<B256, usize> = HashMap::new();
    let mut checked: HashSet<&'static str> = HashSet::new();
    for log in &logs {
        let topic0 = log.topic0().copied().unwrap_or_default();
        let tx = transactions.of(log).await.clone();
        let from = sender_of(&tx);
        let input = input_of(&tx);
        if topic0 == reference::StreamLockCreated::SIGNATURE_HASH {
            let event = reference::StreamLockCreated::decode_log(&log.inner).expect("decode");
            *lock_ids_created.entry(event.lockId).or_default() += 1;
            if let Ok(call) = StreamLockManager::createStreamLockCall::abi_decode(input) {
                assert_eq!(event.user, from, "StreamLockCreated.user is the sender");
                assert_eq!(event.recipient, call.recipient);
                assert_eq!(event.token, call.token);
                assert_eq!(event.totalAmount, call.totalAmount);
                assert_eq!(event.duration, call.duration);
                checked.insert("StreamLockCreated");
            } else if let Ok(call) = StreamLockManager::batchCreateStreamsCall::abi_decode(input) {
                assert_eq!(event.user, from);
                assert!(call.params.iter().any(|p| p.recipient == event.recipient
                    && p.totalAmount == event.totalAmount
                    && p.duration == event.duration));
                checked.insert("StreamLockCreated(batch)");
            }
        } else if topic0 == reference::StreamSettled::SIGNATURE_HASH {
            let event = reference::StreamSettled::decode_log(&log.inner).expect("decode");
            if let Ok(call) = StreamLockManager::cancelStreamCall::abi_decode(input) {
                assert_eq!(event.lockId, call.lockId);
                assert_eq!(event.user, from, "only the stream's user cancels");
                assert_eq!(event.trigger, 0, "UserCancellation");
                checked.insert("StreamSettled(cancel)");
            } else if let Ok(call) = StreamLockManager::settleStreamCall::abi_decode(input) {
                assert_eq!(event.lockId, call.lockId);
                let expected = if from == event.user {
                    0
                } else if from == event.recipient {
                    1
                } else {
                    2
                };
                assert_eq!(event.trigger, expected, "trigger follows the caller");
                checked.insert("StreamSettled(settle)");
            }
        } else if topic0 == reference::EmergencyWithdraw::SIGNATURE_HASH {
            let event = reference::EmergencyWithdraw::decode_log(&log.inner).expect("decode");
            let call = StreamLockManager::emergencyWithdrawCall::abi_decode(input)
                .expect("emitted by emergencyWithdraw");
            assert_eq!(event.lockId, call.lockId);
            assert_eq!(event.user, from);
            checked.insert("EmergencyWithdraw");
        } else if topic0 == reference::PartialClaim::SIGNATURE_HASH {
            let event = reference::PartialClaim::decode_log(&log.inner).expect("decode");
            let call = StreamLockManager::consumeUsageFromPoolCall::abi_decode(input)
                .expect("emitted by consumeUsageFromPool");
            assert_eq!(event.lockId, call.poolId);
            checked.insert("PartialClaim");
        } else if topic0 == reference::ProducerBatchClaim::SIGNATURE_HASH {
            let event = reference::ProducerBatchClaim::decode_log(&log.inner).expect("decode");
            if StreamLockManager::claimStreamsByProducerCall::abi_decode(input).is_ok() {
                assert_eq!(event.producer, from, "a direct claim is by the sender");
            } else {
                Producer::claimStreamsCall::abi_decode(input).expect("or through a clone");
                assert_eq!(Some(event.producer), to_of(&tx), "the clone claims");
            }
            checked.insert("ProducerBatchClaim");
        } else if topic0 == reference::CustomerPlanStreamCreated::SIGNATURE_HASH {
            let event =
                reference::CustomerPlanStreamCreated::decode_log(&log.inner).expect("decode");
            Producer::addCustomerPlanWithStreamCall::abi_decode(input).expect("via a producer");
            assert_eq!(event.customer, from);
            assert_eq!(Some(event.producer), to_of(&tx));
            checked.insert("CustomerPlanStreamCreated");
        } else if topic0 == reference::CustomerPlanWithStreamCreated::SIGNATURE_HASH {
            let event =
                reference::CustomerPlanWithStreamCreated::decode_log(&log.inner).expect("decode");
            assert_eq!(event.customer, from);
            assert_eq!(Some(log.address()), to_of(&tx));
            checked.insert("CustomerPlanWithStreamCreated");
        } else if topic0 == reference::StreamUsageValidated::SIGNATURE_HASH {
            let event = reference::StreamUsageValidated::decode_log(&log.inner).expect("decode");
            let call = Producer::validateUsageCall::abi_decode(input).expect("validateUsage");
            assert_eq!(event.customerPlanId, call.customerPlanId);
            checked.insert("StreamUsageValidated");
        } else if topic0 == reference::LogAddPlan::SIGNATURE_HASH {
            let event = reference::LogAddPlan::decode_log(&log.inner).expect("decode");
            let call = Producer::addPlanCall::abi_decode(input).expect("addPlan");
            assert_eq!(event.producerAddress, log.address());
            assert_eq!(event.name, call.planName);
            assert_eq!(event.planType, call.planType);
            checked.insert("LogAddPlan");
        } else if topic0 == reference::LogProducer::SIGNATURE_HASH {
            let event = reference::LogProducer::decode_log(&log.inner).expect("decode");
            let call = Factory::newBcontractCall::abi_decode(input).expect("newBcontract");
            assert_eq!(event.producerAddress, from);
            assert_eq!(event.name, call.name);
            assert!(clones.contains(&event.cloneAddress));
            checked.insert("LogProducer");
        } else if topic0 == reference::Paused::SIGNATURE_HASH {
            let event = reference::Paused::decode_log(&log.inner).expect("decode");
            assert_eq!(event.account, DEPLOYER);
            checked.insert("Paused");
        } else if topic0 == reference::BalanceWithdrawn::SIGNATURE_HASH {
            let event = reference::BalanceWithdrawn::decode_log(&log.inner).expect("decode");
            assert_eq!(event.user, from);
            assert_eq!(event.token, deployment.token);
            checked.insert("BalanceWithdrawn");
        }
    }
    for what in [
        "StreamLockCreated",
        "StreamLockCreated(batch)",
        "StreamSettled(cancel)",
        "StreamSettled(settle)",
        "EmergencyWithdraw",
        "PartialClaim",
        "ProducerBatchClaim",
        "CustomerPlanStreamCreated",
        "CustomerPlanWithStreamCreated",
        "StreamUsageValidated",
        "LogAddPlan",
        "LogProducer",
        "Paused",
        "BalanceWithdrawn",
    ] {
        assert!(checked.contains(what), "no {what} was checked");
    }

    check_log_order_per_call(&provider, &deployment, &logs).await;

    // Quirk 1: identical creates in one block share a lockId.
    assert!(
        lock_ids_created.values().any(|count| *count > 1),
        "the mix produces a lockId collision"
    );

    // getTokenLock through the proxy returns a created stream as it was sent.
    let manager = StreamLockManager::new(deployment.manager, &provider);
    let created = logs
        .iter()
        .filter_map(|log| {
            let event = reference::StreamLockCreated::decode_log(&log.inner).ok()?;
            (lock_ids_created[&event.lockId] == 1).then_some((log, event.data))
        })
        .next()
        .expect("a stream without collision");
    let (log, event) = created;
    let lock = manager
        .getTokenLock(event.lockId)
        .call()
        .await
        .expect("getTokenLock through the proxy");
    let block = provider
        .get_block_by_number(log.block_number.expect("mined").into())
        .await
        .expect("eth_getBlockByNumber")
        .expect("block exists");
    assert_eq!(lock.lockId, event.lockId);
    assert_eq!(lock.user, event.user);
    assert_eq!(lock.recipient, event.recipient);
    assert_eq!(lock.token, event.token);
    assert_eq!(lock.totalAmount, event.totalAmount);
    assert_eq!(lock.streamRate, event.totalAmount / event.duration);
    assert_eq!(lock.startTime, U256::from(block.header.timestamp));
    assert_eq!(lock.endTime, lock.startTime + event.duration);
    // An unknown lock id reverts with StreamNotFound().
    let unknown = manager.getTokenLock(B256::repeat_byte(0x42)).call().await;
    let error = unknown.expect_err("unknown lock id reverts");
    assert!(
        error
            .as_decoded_error::<StreamLockManager::StreamNotFound>()
            .is_some(),
        "StreamNotFound(), got {error:?}"
    );

    // The deployment: Upgraded, OwnershipTransferred twice, Initialized(1), in one transaction.
    let proxy_logs: Vec<&Log> = logs
        .iter()
        .filter(|log| log.address() == deployment.manager)
        .take(4)
        .collect();
    assert!(proxy_logs
        .iter()
        .all(|log| log.transaction_hash == proxy_logs[0].transaction_hash));
    let upgraded = reference::Upgraded::decode_log(&proxy_logs[0].inner).expect("Upgraded first");
    assert_eq!(upgraded.implementation, deployment.manager_implementation);
    let first_owner =
        reference::OwnershipTransferred::decode_log(&proxy_logs[1].inner).expect("then owner");
    assert_eq!(first_owner.previousOwner, Address::ZERO);
    assert_eq!(first_owner.newOwner, DEPLOYER);
    let second_owner =
        reference::OwnershipTransferred::decode_log(&proxy_logs[2].inner).expect("owner set again");
    assert_eq!(second_owner.previousOwner, DEPLOYER);
    assert_eq!(second_owner.newOwner, DEPLOYER);
    let initialized =
        reference::Initialized::decode_log(&proxy_logs[3].inner).expect("then Initialized");
    assert_eq!(initialized.version, 1);
    // The implementation locked itself at its own address.
    let implementation_logs = logs_of(&provider, vec![deployment.manager_implementation]).await;
    let locked = reference::Initialized::decode_log(&implementation_logs[0].inner)
        .expect("Initialized at the implementation");
    assert_eq!(locked.version, u64::MAX);

    // The run upgraded the proxy to V2 exactly once; state survived the upgrade.
    let upgrades: Vec<Address> = logs
        .iter()
        .filter_map(|log| reference::Upgraded::decode_log(&log.inner).ok())
        .map(|event| event.implementation)
        .collect();
    assert_eq!(upgrades.len(), 2, "deployment plus one upgrade");
    let version = StreamLockManagerV2::new(deployment.manager, &provider)
        .version()
        .call()
        .await
        .expect("version() through the proxy");
    assert_eq!(version, U256::from(2));
    assert_eq!(
        manager
            .getTokenLock(event.lockId)
            .call()
            .await
            .expect("still readable")
            .totalAmount,
        event.totalAmount
    );

    // Quirk 4, drift: what the manager holds differs from the sum of total virtual balances.
    let token = TestToken::new(deployment.token, &provider);
    let held = token
        .balanceOf(deployment.manager)
        .call()
        .await
        .expect("balanceOf");
    let mut virtual_total = U256::ZERO;
    for account in &deployment.funded_accounts {
        let summary = manager
            .getBalanceSummary(*account, deployment.token)
            .call()
            .await
            .expect("getBalanceSummary");
        assert_eq!(summary.total, summary.locked + summary.unlocked);
        virtual_total += summary.total;
    }
    assert!(
        virtual_total > held,
        "usage-pool payouts leave total virtual balances above the tokens held"
    );
}

/// The event names of a receipt, in order: the token's ERC-20 `Transfer` and the reference
/// events of the watched contracts.
async fn receipt_events(provider: &DynProvider, deployment: &Deployment, tx: B256) -> Vec<String> {
    let receipt = provider
        .get_transaction_receipt(tx)
        .await
        .expect("eth_getTransactionReceipt")
        .expect("receipt exists");
    receipt
        .inner
        .logs()
        .iter()
        .map(|log| {
            if log.address() == deployment.token {
                TestToken::Transfer::decode_log(&log.inner).expect("token Transfer");
                return "Transfer".to_string();
            }
            match reference::decode_log(&log.inner) {
                reference::DecodeOutcome::Decoded(event) => event.name.to_string(),
                other => panic!("unexpected log in {tx}: {other:?}"),
            }
        })
        .collect()
}

/// A settlement: `BalanceUnlocked`, a `Transfer` to the recipient when anything accrued,
/// `StreamSettled`. Returns how many names it consumed.
fn settlement_len(names: &[String]) -> usize {
    assert_eq!(names[0], "BalanceUnlocked", "{names:?}");
    let with_payment = names[1] == "Transfer";
    let end = if with_payment { 2 } else { 1 };
    assert_eq!(names[end], "StreamSettled", "{names:?}");
    end + 1
}

/// Log order per call, as the reference lists it.
async fn check_log_order_per_call(provider: &DynProvider, deployment: &Deployment, logs: &[Log]) {
    let mut transactions = Transactions {
        provider,
        cache: HashMap::new(),
    };
    let mut seen_hashes = HashSet::new();
    let mut checked: HashSet<&'static str> = HashSet::new();
    for log in logs {
        let hash = log.transaction_hash.expect("mined");
        if !seen_hashes.insert(hash) {
            continue;
        }
        let tx = transactions.of(log).await.clone();
        let input = input_of(&tx);
        if to_of(&tx) != Some(deployment.manager) {
            continue;
        }
        let names = receipt_events(provider, deployment, hash).await;
        let creation = [
            "Transfer",
            "BalanceDeposited",
            "BalanceLocked",
            "StreamLockCreated",
        ];
        if StreamLockManager::createStreamLockCall::abi_decode(input).is_ok() {
            assert_eq!(names, creation, "createStreamLock");
            checked.insert("createStreamLock");
        } else if let Ok(call) = StreamLockManager::batchCreateStreamsCall::abi_decode(input) {
            assert_eq!(
                names,
                creation.repeat(call.params.len()),
                "batchCreateStreams"
            );
            checked.insert("batchCreateStreams");
        } else if StreamLockManager::cancelStreamCall::abi_decode(input).is_ok()
            || StreamLockManager::settleStreamCall::abi_decode(input).is_ok()
        {
            assert_eq!(settlement_len(&names), names.len(), "{names:?}");
            checked.insert("cancelStream/settleStream");
        } else if StreamLockManager::claimStreamsByProducerCall::abi_decode(input).is_ok() {
            let mut at = 0;
            while names[at] != "ProducerBatchClaim" {
                at += settlement_len(&names[at..]);
            }
            assert_eq!(
                at + 1,
                names.len(),
                "ProducerBatchClaim comes last: {names:?}"
            );
            checked.insert("claimStreamsByProducer");
        } else if StreamLockManager::emergencyWithdrawCall::abi_decode(input).is_ok() {
            let expected = [
                "BalanceUnlocked",
                "Transfer",
                "BalanceWithdrawn",
                "EmergencyWithdraw",
            ];
            assert_eq!(names, expected, "emergencyWithdraw");
            checked.insert("emergencyWithdraw");
        } else if StreamLockManager::consumeUsageFromPoolCall::abi_decode(input).is_ok() {
            assert_eq!(
                names,
                ["Transfer", "BalanceUnlocked", "PartialClaim"],
                "consumeUsageFromPool"
            );
            checked.insert("consumeUsageFromPool");
        } else if StreamLockManager::pauseCall::abi_decode(input).is_ok() {
            assert_eq!(names, ["Paused"]);
            checked.insert("pause");
        } else if StreamLockManager::unpauseCall::abi_decode(input).is_ok() {
            assert_eq!(names, ["Unpaused"]);
            checked.insert("unpause");
        }
    }
    assert_eq!(
        checked.len(),
        8,
        "every kind of call was checked: {checked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_events_produces_ten_thousand_logs_quickly() {
    let anvil = common::Anvil::start().await;
    let url = anvil.rpc_url();
    let deployment: Deployment = deploy(&url).await.expect("deploy");
    let started = Instant::now();
    let produced = generate_events(&url, deployment.clone(), 42, 10_000)
        .await
        .expect("generate events");
    let elapsed = started.elapsed();
    assert!(produced >= 10_000, "only {produced} logs");

    // Fixed gas limits are enough for every flood transaction (none ran out of gas), checked
    // with a second, shorter flood through the generator itself.
    let mut traffic = Traffic::new(&url, deployment.clone(), 43)
        .await
        .expect("connect the traffic generator");
    traffic.flood(2_000).await.expect("flood");
    let totals = traffic.totals();
    assert_eq!(totals.unexpected_reverts, 0, "{totals:?}");

    // The chain agrees with the generator's count.
    let provider = connect(&url).await;
    // The Factory keeps no list of clones: they come from the registry.
    let storage =
        chainsync::devnet::bindings::ProducerStorage::new(deployment.producer_storage, &provider);
    let mut watched = vec![deployment.manager, deployment.producer_storage];
    watched.extend(storage.getClones().call().await.expect("getClones"));
    let on_chain = logs_of(&provider, watched).await.len();
    assert!(
        on_chain >= produced,
        "{on_chain} logs on chain, {produced} counted"
    );
    eprintln!("generated {produced} logs in {elapsed:?}");
    assert!(
        elapsed.as_secs() < 90,
        "generating 10,000 logs took {elapsed:?}"
    );
}
