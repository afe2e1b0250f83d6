//! Configuration loading as an operator meets it: the shipped files load, every broken file is
//! rejected with a message naming the key, secrets never leak, and no input makes loading panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chainsync::config::{
    Config, ConfigError, ConfirmationPolicy, ContractRole, LogFormat, TonAccountRole, TonNetwork,
};
use proptest::prelude::*;

/// Environment variables that change how a file loads; cleared for the binary under test so that
/// the machine's environment cannot change the outcome.
const OVERRIDES: [&str; 8] = [
    "DATABASE_URL",
    "CHAINSYNC_API_LISTEN",
    "CHAINSYNC_METRICS_LISTEN",
    "CHAINSYNC_LOG",
    "RUST_LOG",
    "CHAINSYNC_LOG_FORMAT",
    "CHAINSYNC_EVM_DEVNET_RPC_URLS",
    "CHAINSYNC_EVM_DEVNET_WS_URL",
];

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Loads `path` with exactly the variables in `vars` set.
fn load_with(path: impl AsRef<Path>, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_toml_str(&read(path), &|name: &str| vars.get(name).cloned())
}

fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
    load_with(path, &[])
}

fn fixture(name: &str) -> PathBuf {
    Path::new("tests/fixtures/config").join(name)
}

/// The environment variables a file needs, outside comments: its `${NAME}` references and the
/// variables named by webhook `secret_env` keys.
fn referenced_variables(text: &str) -> Vec<String> {
    let lines = || {
        text.lines()
            .filter(|line| !line.trim_start().starts_with('#'))
    };
    let references = lines()
        .flat_map(|line| line.split("${").skip(1))
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()));
    let secrets = lines()
        .flat_map(|line| line.split("secret_env = \"").skip(1))
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_owned()));
    let mut names: Vec<String> = references.chain(secrets).collect();
    names.sort();
    names.dedup();
    names
}

fn toml_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("config directory exists") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(toml_files_under(&path));
        } else if path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn every_shipped_config_file_loads_once_its_variables_are_set() {
    let files = toml_files_under(Path::new("config"));
    assert!(
        files.len() >= 3,
        "expected default.toml and the examples, found {files:?}"
    );
    for file in files {
        let variables = referenced_variables(&read(&file));
        let vars: Vec<(&str, &str)> = variables
            .iter()
            .map(|name| (name.as_str(), "test-value"))
            .collect();
        if let Err(error) = load_with(&file, &vars) {
            panic!("{} does not load: {error}", file.display());
        }
        for missing in &variables {
            let partial: Vec<(&str, &str)> = vars
                .iter()
                .copied()
                .filter(|(name, _)| name != missing)
                .collect();
            let error = load_with(&file, &partial).expect_err("a referenced variable is unset");
            assert!(
                error
                    .to_string()
                    .contains(&format!("environment variable {missing} is not set")),
                "{}: {error}",
                file.display()
            );
        }
    }
}

#[test]
fn default_config_describes_the_local_devnet() {
    let config = load("config/default.toml").expect("default.toml is valid");
    assert_eq!(
        config.summary(),
        "ok: 1 EVM chain (devnet: 2 contracts), 1 TON network (ton-devnet: 6 accounts)"
    );
    assert_eq!(
        config.database.url.expose(),
        "postgres://postgres@127.0.0.1:5432/chainsync_devnet"
    );

    let devnet = &config.evm[0];
    assert_eq!(devnet.chain_id, 31337);
    assert_eq!(devnet.rpc_urls[0].expose(), "http://127.0.0.1:8545");
    assert_eq!(
        devnet.ws_url.as_ref().map(|url| url.expose()),
        Some("ws://127.0.0.1:8545")
    );
    assert_eq!(devnet.confirmation, ConfirmationPolicy::Depth(2));
    assert_eq!(devnet.poll_interval, Duration::from_secs(1));
    assert_eq!(devnet.stuck_after, Duration::from_secs(15 * 60));
    let manager = &devnet.contracts[0];
    assert_eq!(manager.role, ContractRole::StreamLockManager);
    assert_eq!(manager.start_block, 0);
    assert_ne!(manager.address, devnet.contracts[1].address);
    assert_eq!(devnet.contracts[1].role, ContractRole::ProducerStorage);

    let ton = &config.ton[0];
    assert_eq!(ton.network, TonNetwork::Private("devnet".to_owned()));
    assert_eq!(ton.liteservers.len(), 1);
    assert_eq!(ton.liteservers[0].address.to_string(), "127.0.0.1:46000");
    assert_eq!(
        ton.liteservers[0].public_key_base64(),
        "GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE="
    );
    assert_eq!(ton.global_config_json, read("config/ton-devnet.json"));
    let roles: Vec<TonAccountRole> = ton.accounts.iter().map(|account| account.role).collect();
    assert_eq!(
        roles,
        [
            TonAccountRole::Deposit,
            TonAccountRole::Deposit,
            TonAccountRole::HotWallet,
            TonAccountRole::HotWallet,
            TonAccountRole::HotWallet,
            TonAccountRole::JettonDeposit
        ]
    );
    assert_eq!(ton.accounts[0].memo.as_deref(), Some("order-"));
    assert_eq!(ton.accounts[5].jetton_masters.len(), 1);
}

#[test]
fn mainnet_example_uses_its_environment_and_redacts_it() {
    let vars = [
        ("ALCHEMY_KEY", "alchemy-key-123"),
        ("INFURA_KEY", "infura-key-456"),
        ("PGPASSWORD", "db-password-789"),
        ("WEBHOOK_SECRET", "webhook-secret-000"),
    ];
    let config =
        load_with("config/examples/ethereum-ton-mainnet.toml", &vars).expect("example is valid");
    let ethereum = &config.evm[0];
    assert_eq!(ethereum.chain_id, 1);
    assert_eq!(
        ethereum.rpc_urls[0].expose(),
        "https://eth-mainnet.g.alchemy.com/v2/alchemy-key-123"
    );
    assert_eq!(ethereum.requests_per_second, 10.0);
    assert_eq!(config.ton[0].network, TonNetwork::Mainnet);
    assert_eq!(config.ton[0].confirmations, 10);
    assert_eq!(config.ton[0].liteservers.len(), 3);
    assert_eq!(
        config.webhooks.endpoints[0].secret.expose(),
        "webhook-secret-000"
    );
    assert_eq!(config.log.format, LogFormat::Json);

    let printed = format!("{config:?} {}", config.summary());
    for (_, secret) in vars {
        assert!(!printed.contains(secret), "{secret} leaked into {printed}");
    }
}

#[test]
fn base_sepolia_example_confirms_on_the_finalized_tag() {
    let config = load_with(
        "config/examples/base-sepolia.toml",
        &[("BASE_SEPOLIA_RPC_KEY", "k")],
    )
    .expect("valid");
    assert_eq!(config.evm[0].confirmation, ConfirmationPolicy::Finalized);
    assert_eq!(config.evm[0].rpc_urls.len(), 2);
}

/// Each broken fixture, the start of the message it must produce, and further text it must contain.
const REJECTED: &[(&str, &str, &[&str])] = &[
    ("missing_rpc_urls.toml", "evm[devnet].rpc_urls: got nothing", &["CHAINSYNC_EVM_DEVNET_RPC_URLS"]),
    ("empty_rpc_urls.toml", "evm[devnet].rpc_urls: got []", &["at least one http"]),
    ("negative_confirmations.toml", "evm[devnet].confirmations: got -1", &["an integer between 1 and"]),
    ("unknown_key.toml", "evm[devnet].confirmation: unknown key", &["`confirmations`"]),
    ("malformed_address.toml", "evm[devnet].contracts[0].address: got \"0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc\"", &["40 hex digits"]),
    ("wrong_checksum_address.toml", "evm[devnet].contracts[0].address: got \"0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc8\"", &["EIP-55"]),
    ("bad_duration.toml", "evm[devnet].stuck_after: got \"soon\"", &["duration such as \"30s\""]),
    ("missing_env.toml", "evm[mainnet].rpc_urls[0]: environment variable ALCHEMY_KEY is not set", &[]),
    ("confirmations_and_finality.toml", "evm[devnet].finality: got", &["either confirmations or finality, not both"]),
    ("duplicate_names.toml", "ton[devnet].name: got \"devnet\"", &["evm[devnet] has it"]),
    ("reorg_window_below_confirmations.toml", "evm[devnet].reorg_window: got 32", &["confirmations (64)"]),
    ("bad_url_scheme.toml", "evm[devnet].rpc_urls[0]: got \"wss://eth-mainnet.example/***\"", &["http:// or https://"]),
    ("secret_url_other_error.toml", "evm[mainnet].poll_interval: got \"every now and then\"", &[]),
    ("secret_url_wrong_type.toml", "evm[mainnet].max_block_range: invalid type", &["https://eth-mainnet.example/***"]),
    ("secret_url_syntax_error.toml", "invalid TOML at line 5, column", &[]),
    ("bad_ton_address.toml", "ton[ton].accounts[0].address: got", &["CRC16"]),
    ("jetton_deposit_without_masters.toml", "ton[ton].accounts[0].jetton_masters: got nothing", &[]),
    ("missing_liteservers_file.toml", "ton[ton].liteservers: tests/fixtures/config/no-such-liteservers.json: cannot read", &[]),
    ("both_liteserver_sources.toml", "ton[ton].liteservers_inline: got", &["not both"]),
    ("missing_webhook_secret.toml", "webhooks.endpoints[0].secret_env: environment variable CHAINSYNC_TEST_UNSET_WEBHOOK_KEY is not set", &[]),
    ("same_listen_address.toml", "metrics.listen: got \"127.0.0.1:8080\"", &["different from api.listen"]),
];

#[test]
fn broken_files_are_rejected_with_the_key_the_value_and_what_is_expected() {
    for (file, starts_with, contains) in REJECTED {
        let message = match load(fixture(file)) {
            Ok(config) => panic!("{file} was accepted: {}", config.summary()),
            Err(error) => error.to_string(),
        };
        assert!(
            message.starts_with(starts_with),
            "{file}: {message:?} should start with {starts_with:?}"
        );
        for part in *contains {
            assert!(
                message.contains(part),
                "{file}: {message:?} should contain {part:?}"
            );
        }
        assert!(
            !message.contains("SECRET"),
            "{file}: a secret leaked into {message:?}"
        );
    }
}

#[test]
fn every_broken_fixture_is_covered() {
    let mut fixtures: Vec<String> = std::fs::read_dir("tests/fixtures/config")
        .expect("fixture directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".toml"))
        .collect();
    fixtures.sort();
    let mut covered: Vec<String> = REJECTED
        .iter()
        .map(|(file, _, _)| (*file).to_owned())
        .collect();
    covered.sort();
    assert_eq!(fixtures, covered);
}

#[test]
fn errors_from_keys_with_a_default_name_the_key_too() {
    let cases = [
        ("[database]\nmax_connections = 0", "database.max_connections: got 0"),
        ("[database]\nurl = \"mysql://root:SECRET@db/x\"", "database.url: got \"mysql://***@db/***\""),
        ("[api]\nlisten = \"localhost\"", "api.listen: got \"localhost\""),
        ("[log]\nlevel = \"chainsync=loud\"", "log.level: got \"chainsync=loud\""),
        ("[retention]\nremoved_events = \"0s\"", "retention.removed_events: got \"0s\""),
        ("[webhooks]\nmax_attempts = 0", "webhooks.max_attempts: got 0"),
        ("[webhooks]\nendpoints = [{ url = \"https://h/SECRET\", secret_env = \"lower-case\" }]", "webhooks.endpoints[0].secret_env: got \"lower-case\""),
        ("[[evm]]\nname = \"Dev Net\"\nchain_id = 1\nrpc_urls = [\"http://h\"]", "evm[0].name: got \"Dev Net\""),
        ("[[evm]]\nname = \"a\"\nchain_id = 0\nrpc_urls = [\"http://h\"]", "evm[a].chain_id: got 0"),
        ("[[evm]]\nname = \"a\"\nchain_id = 1\nrpc_urls = [\"http://h\"]\nws_url = \"http://h/SECRET\"", "evm[a].ws_url: got \"http://h/***\""),
        ("[[evm]]\nname = \"a\"\nchain_id = 1\nrpc_urls = [\"http://h\"]\nrequests_per_second = nan", "evm[a].requests_per_second: got NaN"),
        ("[[evm]]\nname = \"a\"\nchain_id = 1\nrpc_urls = [\"http://h\"]\nhead_stall_after = \"1s\"\npoll_interval = \"2s\"", "evm[a].head_stall_after: got \"1s\""),
        ("[[evm]]\nname = \"a\"\nchain_id = 1\nrpc_urls = [\"http://h\"]\nfinality = \"safe\"", "evm[a].finality: unknown variant `safe`"),
        ("[[evm]]\nname = \"a\"\nchain_id = 1\nrpc_urls = [\"http://h\"]\n[[evm.contracts]]\nrole = \"token\"\naddress = \"0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48\"\n[[evm.contracts]]\nrole = \"token\"\naddress = \"0xA0B86991C6218B36C1D19D4A2E9EB0CE3606EB48\"", "evm[a].contracts[1].address: got"),
        ("[[evm]]\nname = \"a\"\nchain_id = 1\nrpc_urls = [\"http://h\"]\n[[evm]]\nname = \"b\"\nchain_id = 1\nrpc_urls = [\"http://h\"]", "evm[b].chain_id: got 1"),
        ("[[evm]]\nname = \"a-b\"\nchain_id = 1\nrpc_urls = [\"http://h\"]\n[[evm]]\nname = \"a_b\"\nchain_id = 2\nrpc_urls = [\"http://h\"]", "evm[a_b].name: got \"a_b\""),
        ("[[evm]]\nname = \"a\"\nchain_id = 1\nrpc_urls = [\"http://h\"]\n[[evm.contracts]]\nrole = \"vault\"\naddress = \"0x\"", "evm[a].contracts[0].role: unknown variant `vault`"),
        ("[[ton]]\nname = \"t\"\nnetwork = \"Main Net\"\nliteservers = \"config/ton-devnet.json\"", "ton[t].network: got \"Main Net\""),
        ("[[ton]]\nname = \"t\"\nnetwork = \"mainnet\"", "ton[t].liteservers: got nothing"),
        ("[[ton]]\nname = \"t\"\nnetwork = \"mainnet\"\nliteservers_inline = []", "ton[t].liteservers_inline: got []"),
        ("[[ton]]\nname = \"t\"\nnetwork = \"mainnet\"\nliteservers_inline = [{ ip = \"1.2.3\", port = 1, key = \"GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE=\" }]", "ton[t].liteservers_inline[0].ip: got \"1.2.3\""),
        ("[[ton]]\nname = \"t\"\nnetwork = \"mainnet\"\nliteservers_inline = [{ ip = 1, port = 65536, key = \"GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE=\" }]", "ton[t].liteservers_inline[0].port: got 65536"),
        ("[[ton]]\nname = \"t\"\nnetwork = \"mainnet\"\nliteservers_inline = [{ ip = 1, port = 1, key = \"AAAA\" }]", "ton[t].liteservers_inline[0].key: got \"AAAA\""),
        ("[[ton]]\nname = \"t\"\nnetwork = \"mainnet\"\nliteservers = \"config/ton-devnet.json\"\nconfirmations = -1", "ton[t].confirmations: got -1"),
        ("[[ton]]\nname = \"t\"\nnetwork = \"mainnet\"\nliteservers = \"config/ton-devnet.json\"\n[[ton.accounts]]\nrole = \"hot_wallet\"\naddress = \"0:00\"", "ton[t].accounts[0].address: got \"0:00\""),
        ("[[ton]]\nname = \"t\"\nnetwork = \"mainnet\"\nliteservers = \"config/ton-devnet.json\"\n[[ton.accounts]]\nrole = \"hot_wallet\"\naddress = \"0:2d44b849548fa919e03da946b541134d6f16a5135247659c7156790250c67408\"\nmemo = \"x\"", "ton[t].accounts[0].memo: got \"x\""),
        ("[[ton]]\nname = \"t\"\nnetwork = \"mainnet\"\nliteservers = \"config/ton-devnet.json\"\n[[ton.accounts]]\nrole = \"deposit\"\naddress = \"kQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqKYH\"", "ton[t].accounts[0].address: got"),
        ("[[ton]]\nname = \"t\"\nnetwork = \"mainnet\"\nliteservers = \"config/ton-devnet.json\"\n[[ton.accounts]]\nrole = \"deposit\"\naddress = \"0:2d44b849548fa919e03da946b541134d6f16a5135247659c7156790250c67408\"\n[[ton.accounts]]\nrole = \"hot_wallet\"\naddress = \"0:2D44B849548FA919E03DA946B541134D6F16A5135247659C7156790250C67408\"", "ton[t].accounts[1].address: got"),
        ("[[ton]]\nname = \"t\"\nnetwork = \"mainnet\"\nliteservers = \"config\"", "ton[t].liteservers: config: not a regular file"),
        ("[[ton]]\nname = \"t\"\nnetwork = \"mainnet\"\nliteservers = \"Cargo.toml\"", "ton[t].liteservers: Cargo.toml: not valid JSON"),
    ];
    for (text, starts_with) in cases {
        let message = match Config::from_toml_str(text, &|_: &str| None) {
            Ok(config) => panic!("{text:?} was accepted: {config:?}"),
            Err(error) => error.to_string(),
        };
        assert!(
            message.starts_with(starts_with),
            "{text:?}: {message:?} should start with {starts_with:?}"
        );
        assert!(!message.contains("SECRET"), "{message}");
    }
}

#[test]
fn a_testnet_only_address_is_accepted_on_testnet() {
    let text = "[[ton]]\nname = \"t\"\nnetwork = \"testnet\"\nliteservers = \"config/ton-devnet.json\"\n[[ton.accounts]]\nrole = \"deposit\"\naddress = \"kQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqKYH\"";
    let config = Config::from_toml_str(text, &|_: &str| None).expect("valid on testnet");
    assert_eq!(
        config.ton[0].accounts[0].address.to_raw(),
        "0:83dfd552e63729b472fcbcc8c45ebcc6691702558b68ec7527e1ba403a0f31a8"
    );
}

#[test]
fn inline_liteservers_make_a_global_config_document() {
    let text = r#"
        [[ton]]
        name = "t"
        network = "mainnet"
        liteservers_inline = [
          { ip = 2130706433, port = 46000, key = "GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE=" },
          { ip = "203.0.113.10", port = 443, key = "W4zfAAVxHpz4s7X+oDqm+x0KfJkViSTe9kckXP6YMQc=" },
        ]
    "#;
    let config = Config::from_toml_str(text, &|_: &str| None).expect("valid");
    let network = &config.ton[0];
    assert_eq!(
        network.liteservers[1].address.to_string(),
        "203.0.113.10:443"
    );
    assert_eq!(network.liteservers_file, None);
    let document: serde_json::Value =
        serde_json::from_str(&network.global_config_json).expect("JSON");
    for key in ["@type", "dht", "liteservers", "validator"] {
        assert!(document.get(key).is_some(), "{key} missing from {document}");
    }
    assert_eq!(document["liteservers"][0]["ip"], 2130706433);
    assert_eq!(document["liteservers"][1]["ip"], -889163510);
    assert_eq!(
        document["liteservers"][1]["id"]["key"],
        "W4zfAAVxHpz4s7X+oDqm+x0KfJkViSTe9kckXP6YMQc="
    );
    // Defaults of the keys left out.
    assert_eq!(network.confirmations, 0);
    assert_eq!(network.poll_interval, Duration::from_secs(2));
    assert_eq!(network.stuck_after, Duration::from_secs(600));
    assert_eq!(network.request_timeout, Duration::from_secs(5));
}

#[test]
fn evm_defaults_apply_to_keys_left_out() {
    let text = "[[evm]]\nname = \"a\"\nchain_id = 1\nrpc_urls = [\"http://h\"]\n";
    let chain = Config::from_toml_str(text, &|_: &str| None)
        .expect("valid")
        .evm
        .remove(0);
    assert_eq!(chain.confirmation, ConfirmationPolicy::Depth(12));
    assert_eq!(chain.reorg_window, 128);
    assert_eq!(chain.poll_interval, Duration::from_secs(2));
    assert_eq!(chain.max_block_range, 2000);
    assert_eq!(chain.requests_per_second, 25.0);
    assert_eq!(chain.stuck_after, Duration::from_secs(900));
    assert_eq!(chain.stuck_after_blocks, 300);
    assert_eq!(chain.dropped_after, Duration::from_secs(1800));
    assert_eq!(chain.head_stall_after, Duration::from_secs(120));
    assert_eq!(chain.overdue_grace, Duration::from_secs(3600));
    assert_eq!(chain.drift_check_interval, Duration::from_secs(300));
    assert_eq!(chain.ws_url, None);

    // The reorg window grows with a deeper confirmation depth unless it is set.
    let deep = Config::from_toml_str(&format!("{text}confirmations = 300\n"), &|_: &str| None)
        .expect("valid");
    assert_eq!(deep.evm[0].reorg_window, 300);
}

#[test]
fn environment_overrides_win_over_the_file() {
    let vars = [
        ("DATABASE_URL", "postgres://app:pw@db.example:5433/other"),
        ("CHAINSYNC_API_LISTEN", "0.0.0.0:18080"),
        ("CHAINSYNC_METRICS_LISTEN", "0.0.0.0:19100"),
        ("RUST_LOG", "warn"),
        ("CHAINSYNC_LOG", "debug"),
        ("CHAINSYNC_LOG_FORMAT", "json"),
        (
            "CHAINSYNC_EVM_DEVNET_RPC_URLS",
            "http://10.0.0.1:8545, http://10.0.0.2:8545",
        ),
        ("CHAINSYNC_EVM_DEVNET_WS_URL", "wss://10.0.0.1:8546"),
    ];
    let config = load_with("config/default.toml", &vars).expect("valid");
    assert_eq!(
        config.database.url.expose(),
        "postgres://app:pw@db.example:5433/other"
    );
    assert_eq!(config.api.listen.to_string(), "0.0.0.0:18080");
    assert_eq!(config.metrics.listen.to_string(), "0.0.0.0:19100");
    assert_eq!(config.log.level, "debug");
    assert_eq!(config.log.format, LogFormat::Json);
    let urls: Vec<&str> = config.evm[0]
        .rpc_urls
        .iter()
        .map(|url| url.expose())
        .collect();
    assert_eq!(urls, ["http://10.0.0.1:8545", "http://10.0.0.2:8545"]);
    assert_eq!(
        config.evm[0].ws_url.as_ref().map(|url| url.expose()),
        Some("wss://10.0.0.1:8546")
    );

    let rust_log_only =
        load_with("config/default.toml", &[("RUST_LOG", "chainsync=trace")]).expect("valid");
    assert_eq!(rust_log_only.log.level, "chainsync=trace");

    // An RPC list given only in the environment completes a file that has none.
    let completed = load_with(
        fixture("missing_rpc_urls.toml"),
        &[("CHAINSYNC_EVM_DEVNET_RPC_URLS", "http://h:1")],
    );
    assert_eq!(
        completed.expect("valid").evm[0].rpc_urls[0].expose(),
        "http://h:1"
    );
}

#[test]
fn a_bad_override_names_its_variable_and_hides_its_secret() {
    let error = load_with(
        "config/default.toml",
        &[("DATABASE_URL", "mysql://root:SECRET@db/x")],
    )
    .expect_err("should be rejected");
    assert_eq!(
        error.to_string(),
        "database.url: got \"mysql://***@db/***\", expected a URL with scheme postgres:// or postgresql:// \
         and a host (value from environment variable DATABASE_URL)"
    );
    let error = load_with(
        "config/default.toml",
        &[("CHAINSYNC_EVM_DEVNET_RPC_URLS", "http://ok, ftp://h/SECRET")],
    )
    .expect_err("should be rejected")
    .to_string();
    assert!(
        error.starts_with("evm[devnet].rpc_urls[1]: got \"ftp://h/***\""),
        "{error}"
    );
    assert!(
        error.ends_with("(value from environment variable CHAINSYNC_EVM_DEVNET_RPC_URLS)"),
        "{error}"
    );
}

#[test]
fn secrets_never_appear_in_debug_output_summaries_or_errors() {
    let text = r#"
        [database]
        url = "postgres://chainsync:${DB_PASSWORD}@db.internal:5432/chainsync"
        [[evm]]
        name = "mainnet"
        chain_id = 1
        rpc_urls = ["https://eth-mainnet.example/v2/${RPC_KEY}", "https://user:LITERAL-SECRET@node.example/rpc"]
        ws_url = "wss://eth-mainnet.example/ws/${RPC_KEY}"
        [webhooks]
        endpoints = [{ url = "https://hooks.example/${HOOK_PATH}", secret_env = "HOOK_SIGNING_KEY" }]
    "#;
    let vars: HashMap<&str, &str> = [
        ("DB_PASSWORD", "SECRET-DB"),
        ("RPC_KEY", "SECRET-RPC"),
        ("HOOK_PATH", "SECRET-PATH"),
        ("HOOK_SIGNING_KEY", "SECRET-HMAC"),
    ]
    .into_iter()
    .collect();
    let env = |name: &str| vars.get(name).map(|value| (*value).to_owned());
    let config = Config::from_toml_str(text, &env).expect("valid");
    assert_eq!(
        config.evm[0].rpc_urls[0].expose(),
        "https://eth-mainnet.example/v2/SECRET-RPC"
    );
    assert_eq!(config.webhooks.endpoints[0].secret.expose(), "SECRET-HMAC");
    for printed in [
        format!("{config:?}"),
        format!("{config:#?}"),
        config.summary(),
        config.evm[0].rpc_urls[1].to_string(),
    ] {
        assert!(!printed.contains("SECRET"), "a secret leaked: {printed}");
    }

    let invalid = text.replace("chain_id = 1", "chain_id = 1\nconfirmations = 0");
    let error = Config::from_toml_str(&invalid, &env).expect_err("should be rejected");
    assert!(
        error
            .to_string()
            .starts_with("evm[mainnet].confirmations: got 0"),
        "{error}"
    );
    assert!(
        !format!("{error} {error:?}").contains("SECRET"),
        "{error:?}"
    );
}

#[test]
fn unreadable_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.toml");
    let error = Config::load(&missing).expect_err("should be rejected");
    assert!(matches!(error, ConfigError::Read { .. }), "{error}");
    assert!(error.to_string().contains("missing.toml"), "{error}");
    assert!(matches!(
        Config::load(dir.path()),
        Err(ConfigError::Read { .. })
    ));
    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, [0xff_u8, 0xfe, 0x00]).expect("write");
    assert!(matches!(
        Config::load(&binary),
        Err(ConfigError::Read { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// `chainsync check-config`

fn check_config(path: &Path, vars: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chainsync"));
    command.arg("check-config").arg(path);
    for name in OVERRIDES {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied());
    let output = command.output().expect("run chainsync");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_default_file_with_a_summary() {
    let (code, stdout, stderr) = check_config(Path::new("config/default.toml"), &[]);
    assert_eq!(code, 0, "stdout {stdout:?} stderr {stderr:?}");
    // The summary may be preceded by the file name.
    assert!(
        stdout.trim().ends_with(
            "ok: 1 EVM chain (devnet: 2 contracts), 1 TON network (ton-devnet: 6 accounts)"
        ),
        "{stdout:?}"
    );
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout:?}");
}

#[test]
fn check_config_rejects_broken_files_naming_the_key_without_leaking_secrets() {
    for (file, starts_with, _) in REJECTED {
        let (code, stdout, stderr) = check_config(&fixture(file), &[]);
        assert_eq!(code, 2, "{file}: stdout {stdout:?} stderr {stderr:?}");
        // The message may be preceded by the file name.
        assert!(
            stderr.starts_with("error: ") && stderr.contains(starts_with),
            "{file}: {stderr:?}"
        );
        assert!(
            !stdout.contains("SECRET") && !stderr.contains("SECRET"),
            "{file}: {stdout:?} {stderr:?}"
        );
    }
}

#[test]
fn check_config_output_of_a_valid_file_hides_secrets_from_the_environment() {
    let vars = [
        ("ALCHEMY_KEY", "SECRET-A"),
        ("INFURA_KEY", "SECRET-I"),
        ("PGPASSWORD", "SECRET-P"),
        ("WEBHOOK_SECRET", "SECRET-W"),
    ];
    let (code, stdout, stderr) = check_config(
        Path::new("config/examples/ethereum-ton-mainnet.toml"),
        &vars,
    );
    assert_eq!(code, 0, "stdout {stdout:?} stderr {stderr:?}");
    assert!(
        !stdout.contains("SECRET") && !stderr.contains("SECRET"),
        "{stdout:?} {stderr:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness: no input makes loading panic.

fn env_for_properties(name: &str) -> Option<String> {
    match name {
        "KEY" => Some("k3y".to_owned()),
        "EMPTY" => Some(String::new()),
        "WEIRD" => Some("\"]}\n[[evm]]".to_owned()),
        _ => None,
    }
}

/// Values a schema key might plausibly (or implausibly) be given.
fn any_value() -> impl Strategy<Value = toml::Value> {
    let words = prop::sample::select(vec![
        "",
        "0",
        "-1",
        "1s",
        "0s",
        "500ms",
        "soon",
        "10y",
        "1h 30m",
        "99999999999999999999d",
        "finalized",
        "safe",
        "text",
        "json",
        "info",
        "chainsync=debug,sqlx=warn",
        "[",
        "mainnet",
        "testnet",
        "devnet",
        "Dev Net",
        "http://127.0.0.1:8545",
        "https://x.example/v2/${KEY}",
        "ws://127.0.0.1:8545",
        "ftp://x",
        "https:///x",
        "postgres://u:p@h/db",
        "${MISSING}",
        "${",
        "$${KEY}",
        "${EMPTY}",
        "${WEIRD}",
        "127.0.0.1:8080",
        "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
        "0xcf7ed3acca5a467e9e704c703e8d87f634fb0fc8",
        "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc8",
        "0x",
        "0:81ef070f03b7b398c9c79565e6d6d2a3330781ede0897d83c914edc79e95c46a",
        "EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N",
        "kQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqKYH",
        "0:zz",
        "config/ton-devnet.json",
        "config/default.toml",
        "/dev/zero",
        "/",
        "deposit",
        "hot_wallet",
        "jetton_deposit",
        "stream_lock_manager",
        "token",
        "GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE=",
        "AAAA",
        "HOOK_SECRET",
        "KEY",
        "1.2.3.4",
    ])
    .prop_map(|word| toml::Value::String(word.to_owned()));
    let scalar = prop_oneof![
        4 => words,
        1 => any::<String>().prop_map(toml::Value::String),
        2 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(-1_i64), Just(0_i64), Just(2_130_706_433_i64), -5_i64..70_000]
            .prop_map(toml::Value::Integer),
        1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-0.0), Just(1e-300), any::<f64>()]
            .prop_map(toml::Value::Float),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
    ];
    scalar.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::vec((any_key(), inner), 0..4)
                .prop_map(|entries| toml::Value::Table(entries.into_iter().collect())),
        ]
    })
}

/// Keys of the schema, plus a few that are not in it.
fn any_key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "url",
        "max_connections",
        "api_max_connections",
        "statement_timeout",
        "listen",
        "level",
        "format",
        "block_window",
        "removed_events",
        "delivered_outbox",
        "name",
        "chain_id",
        "rpc_urls",
        "ws_url",
        "confirmations",
        "finality",
        "poll_interval",
        "max_block_range",
        "requests_per_second",
        "reorg_window",
        "stuck_after",
        "stuck_after_blocks",
        "dropped_after",
        "head_stall_after",
        "overdue_grace",
        "drift_check_interval",
        "contracts",
        "role",
        "address",
        "start_block",
        "network",
        "liteservers",
        "liteservers_inline",
        "ip",
        "port",
        "key",
        "request_timeout",
        "accounts",
        "memo",
        "jetton_masters",
        "endpoints",
        "secret_env",
        "max_attempts",
        "unknown",
        "",
    ])
    .prop_map(str::to_owned)
}

/// Where in the default document a change lands: a section, optionally an entry of an array
/// section, optionally a nested entry.
fn any_place() -> impl Strategy<Value = (String, Option<usize>, Option<(String, usize)>)> {
    let section = prop::sample::select(vec![
        "database",
        "api",
        "metrics",
        "log",
        "retention",
        "evm",
        "ton",
        "webhooks",
    ]);
    let nested = prop::option::of((
        prop::sample::select(vec![
            "contracts",
            "accounts",
            "liteservers_inline",
            "endpoints",
        ])
        .prop_map(str::to_owned),
        0_usize..3,
    ));
    (
        section.prop_map(str::to_owned),
        prop::option::of(0_usize..2),
        nested,
    )
}

/// The table at `place` in `document`, if the document has one there.
fn table_at<'a>(
    document: &'a mut toml::Table,
    place: &(String, Option<usize>, Option<(String, usize)>),
) -> Option<&'a mut toml::Table> {
    let (section, entry, nested) = place;
    let mut target = document.get_mut(section)?;
    if let Some(position) = entry {
        if target.is_array() {
            target = target.as_array_mut()?.get_mut(*position)?;
        }
    }
    if let Some((nested_key, position)) = nested {
        let exists = target
            .get(nested_key.as_str())
            .and_then(toml::Value::as_array)
            .is_some_and(|items| *position < items.len());
        if exists {
            target = target
                .get_mut(nested_key.as_str())?
                .as_array_mut()?
                .get_mut(*position)?;
        }
    }
    target.as_table_mut()
}

/// Applies one change (set a key to a value, or remove it) to the default document.
fn apply_change(
    document: &mut toml::Table,
    place: &(String, Option<usize>, Option<(String, usize)>),
    key: &str,
    value: Option<toml::Value>,
) {
    let Some(table) = table_at(document, place) else {
        return;
    };
    match value {
        Some(value) => table.insert(key.to_owned(), value),
        None => table.remove(key),
    };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = Config::from_toml_str(&text, &env_for_properties);
    }

    #[test]
    fn toml_like_text_never_panics(text in "([\\[\\]{}=,.\"'#$ \n]|[a-z_]{1,12}|[0-9]{1,3}|\\$\\{KEY\\}){0,60}") {
        let _ = Config::from_toml_str(&text, &env_for_properties);
    }

    #[test]
    fn mutated_default_file_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<Option<char>>()), 1..6)) {
        let mut chars: Vec<char> = read("config/default.toml").chars().collect();
        for (at, replacement) in edits {
            let position = at.index(chars.len());
            match replacement {
                Some(c) => chars[position] = c,
                None => { chars.remove(position); }
            }
        }
        let text: String = chars.into_iter().collect();
        let _ = Config::from_toml_str(&text, &env_for_properties);
    }

    #[test]
    fn structured_documents_from_the_schema_never_panic(
        changes in prop::collection::vec((any_place(), any_key(), prop::option::of(any_value())), 1..6),
    ) {
        let mut document: toml::Table = read("config/default.toml").parse().expect("default.toml is TOML");
        for (place, key, value) in changes {
            apply_change(&mut document, &place, &key, value);
        }
        let _ = Config::from_toml_str(&document.to_string(), &env_for_properties);
    }

    #[test]
    fn random_documents_from_the_schema_never_panic(
        sections in prop::collection::vec(
            (prop::sample::select(vec!["database", "api", "metrics", "log", "retention", "evm", "ton", "webhooks", "x"]),
             any_value()),
            0..6,
        ),
    ) {
        let document: toml::Table = sections.into_iter().map(|(section, value)| (section.to_owned(), value)).collect();
        let _ = Config::from_toml_str(&document.to_string(), &env_for_properties);
    }
}
