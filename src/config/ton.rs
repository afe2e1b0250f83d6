//! `[[ton]]`: the TON networks to follow, how to reach their liteservers, and the accounts to watch.

use std::fmt;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::error::{ConfigError, Result};
use super::keys::{index, join, show};
use super::raw::{RawLiteserver, RawTonAccount, RawTonAccountRole, RawTonNetwork};
use super::ton_address::{self, TonAddress};
use super::validate::Checker;

/// K = 0: a transaction returned by a liteserver is already committed by a masterchain block, and
/// TON has no probabilistic reorgs, so no further blocks are needed for finality. Operators who want
/// a buffer set more.
const DEFAULT_CONFIRMATIONS: u32 = 0;
/// Upper bound of `confirmations`: 10 000 masterchain blocks is about 14 hours.
const CONFIRMATIONS_MAX: u32 = 10_000;
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(10 * 60);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest liteservers file read: real global configs are tens of kilobytes.
const LITESERVERS_FILE_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Top-level keys the lite client requires in a global config document.
const GLOBAL_CONFIG_KEYS: [&str; 4] = ["@type", "dht", "liteservers", "validator"];

/// One TON network to follow (a `[[ton]]` entry), validated.
#[derive(Clone, PartialEq, Eq)]
pub struct TonNetworkConfig {
    /// Unique name (across `evm` and `ton`), `[a-z0-9_-]{1,32}`; the `chain` label of every metric.
    pub name: String,
    /// Which network the liteservers must belong to, checked at start-up.
    pub network: TonNetwork,
    /// The liteservers to use, in the order given.
    pub liteservers: Vec<Liteserver>,
    /// The `global.config.json`-style file the liteservers came from, when not given inline.
    pub liteservers_file: Option<PathBuf>,
    /// The global config document to build the lite client from: the file's own text, or a
    /// document made from the inline liteservers.
    pub global_config_json: String,
    /// K: further masterchain blocks required after the one that committed a transaction.
    pub confirmations: u32,
    /// How often the masterchain head and the watched accounts are polled.
    pub poll_interval: Duration,
    /// A transfer not final after this long is flagged stuck.
    pub stuck_after: Duration,
    /// Timeout of one liteserver request.
    pub request_timeout: Duration,
    /// The accounts to watch.
    pub accounts: Vec<TonAccountConfig>,
}

impl fmt::Debug for TonNetworkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TonNetworkConfig")
            .field("name", &self.name)
            .field("network", &self.network)
            .field("liteservers", &self.liteservers)
            .field("liteservers_file", &self.liteservers_file)
            .field(
                "global_config_json",
                &format_args!("<{} bytes>", self.global_config_json.len()),
            )
            .field("confirmations", &self.confirmations)
            .field("poll_interval", &self.poll_interval)
            .field("stuck_after", &self.stuck_after)
            .field("request_timeout", &self.request_timeout)
            .field("accounts", &self.accounts)
            .finish()
    }
}

/// The TON network a `[[ton]]` entry follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TonNetwork {
    /// TON mainnet.
    Mainnet,
    /// TON testnet.
    Testnet,
    /// A private network (a local devnet, say), identified by name.
    Private(String),
}

impl TonNetwork {
    /// The network as written in configuration.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Mainnet => "mainnet",
            Self::Testnet => "testnet",
            Self::Private(name) => name,
        }
    }
}

impl fmt::Display for TonNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One liteserver: where it listens and the ed25519 public key it proves itself with.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Liteserver {
    /// IPv4 address and TCP port.
    pub address: SocketAddrV4,
    /// ed25519 public key (the `id.key` of `global.config.json`).
    pub public_key: [u8; 32],
}

impl Liteserver {
    /// The public key in base64, as written in `global.config.json`.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.public_key)
    }

    /// The `ip` field of `global.config.json`: the IPv4 address as a signed 32-bit integer.
    pub fn ip_as_i32(&self) -> i32 {
        i32::from_be_bytes(self.address.ip().octets())
    }
}

impl fmt::Debug for Liteserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Liteserver({} key {})",
            self.address,
            self.public_key_base64()
        )
    }
}

/// One watched TON account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TonAccountConfig {
    /// What the account is, which decides how its transactions are read.
    pub role: TonAccountRole,
    /// The account address.
    pub address: TonAddress,
    /// `deposit` only: a deposit matches when its text comment starts with this prefix; others
    /// are recorded with `memo_matched = false`.
    pub memo: Option<String>,
    /// `jetton_deposit` only: the jetton masters whose transfers are accepted (at least one).
    pub jetton_masters: Vec<TonAddress>,
}

/// The kinds of watched TON account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TonAccountRole {
    /// Receives TON deposits.
    Deposit,
    /// Sends outgoing transfers, each followed until the destination has consumed it.
    HotWallet,
    /// Owns jetton wallets that receive jetton deposits.
    JettonDeposit,
}

impl TonAccountRole {
    /// The role as written in configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Deposit => "deposit",
            Self::HotWallet => "hot_wallet",
            Self::JettonDeposit => "jetton_deposit",
        }
    }
}

impl fmt::Display for TonAccountRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<RawTonAccountRole> for TonAccountRole {
    fn from(raw: RawTonAccountRole) -> Self {
        match raw {
            RawTonAccountRole::Deposit => Self::Deposit,
            RawTonAccountRole::HotWallet => Self::HotWallet,
            RawTonAccountRole::JettonDeposit => Self::JettonDeposit,
        }
    }
}

/// Validates one `[[ton]]` entry; `key` is its key (`ton[ton-devnet]`).
pub(super) fn validate_network(
    raw: RawTonNetwork,
    key: &str,
    checker: &Checker<'_>,
) -> Result<TonNetworkConfig> {
    let field = |name: &str| join(key, name);
    let name = checker.name(&field("name"), &raw.name)?;
    let network = match raw.network.as_str() {
        "mainnet" => TonNetwork::Mainnet,
        "testnet" => TonNetwork::Testnet,
        other => TonNetwork::Private(checker.name(&field("network"), other).map_err(|_| {
            checker.invalid(
                &field("network"),
                show(other),
                "\"mainnet\", \"testnet\", or a private network name of 1 to 32 characters from a-z, 0-9, `_` and `-`",
            )
        })?),
    };

    let (liteservers, liteservers_file, global_config_json) =
        match (raw.liteservers, raw.liteservers_inline) {
            (Some(_), Some(_)) => {
                return Err(checker.invalid(
                    &field("liteservers_inline"),
                    "a list together with liteservers",
                    "either liteservers (a file) or liteservers_inline, not both",
                ));
            }
            (None, None) => {
                return Err(checker.invalid(
                    &field("liteservers"),
                    "nothing",
                    "the path of a global.config.json-style file, or a liteservers_inline list",
                ));
            }
            (Some(path), None) => {
                let file = PathBuf::from(path);
                let (text, liteservers) = read_liteservers_file(&file).map_err(|detail| {
                    ConfigError::LiteserversFile {
                        key: field("liteservers"),
                        file: file.clone(),
                        detail,
                    }
                })?;
                (liteservers, Some(file), text)
            }
            (None, Some(entries)) => {
                let inline_key = field("liteservers_inline");
                if entries.is_empty() {
                    return Err(checker.invalid(
                        &inline_key,
                        "[]",
                        "at least one liteserver { ip, port, key }",
                    ));
                }
                let liteservers = entries
                    .iter()
                    .enumerate()
                    .map(|(position, entry)| {
                        inline_liteserver(entry, &index(&inline_key, position), checker)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let text = synthesize_global_config(&liteservers);
                (liteservers, None, text)
            }
        };

    let accounts_key = field("accounts");
    let mut accounts: Vec<TonAccountConfig> = Vec::with_capacity(raw.accounts.len());
    let mut first_at: std::collections::HashMap<TonAddress, usize> =
        std::collections::HashMap::with_capacity(raw.accounts.len());
    for (position, account) in raw.accounts.into_iter().enumerate() {
        let account_key = index(&accounts_key, position);
        let account = validate_account(account, &account_key, &network, checker)?;
        if let Some(&first) = first_at.get(&account.address) {
            return Err(checker.invalid(
                &join(&account_key, "address"),
                show(&account.address.to_raw()),
                format!(
                    "an address not already watched ({} has it)",
                    index(&accounts_key, first)
                ),
            ));
        }
        first_at.insert(account.address, position);
        accounts.push(account);
    }

    let duration = |name: &str, written: Option<&str>, default| {
        checker.duration(&field(name), written, default, false)
    };
    Ok(TonNetworkConfig {
        name,
        network,
        liteservers,
        liteservers_file,
        global_config_json,
        confirmations: checker.integer_u32(
            &field("confirmations"),
            raw.confirmations,
            DEFAULT_CONFIRMATIONS,
            0..=CONFIRMATIONS_MAX,
        )?,
        poll_interval: duration(
            "poll_interval",
            raw.poll_interval.as_deref(),
            DEFAULT_POLL_INTERVAL,
        )?,
        stuck_after: duration(
            "stuck_after",
            raw.stuck_after.as_deref(),
            DEFAULT_STUCK_AFTER,
        )?,
        request_timeout: duration(
            "request_timeout",
            raw.request_timeout.as_deref(),
            DEFAULT_REQUEST_TIMEOUT,
        )?,
        accounts,
    })
}

fn validate_account(
    raw: RawTonAccount,
    key: &str,
    network: &TonNetwork,
    checker: &Checker<'_>,
) -> Result<TonAccountConfig> {
    let role = TonAccountRole::from(raw.role);
    let address = ton_account_address(&raw.address, &join(key, "address"), network, checker)?;

    let memo_key = join(key, "memo");
    let memo = match raw.memo {
        Some(memo) if role != TonAccountRole::Deposit => {
            return Err(checker.invalid(
                &memo_key,
                show(&memo),
                format!("no memo on a {role} account (deposit only)"),
            ));
        }
        Some(memo) if memo.is_empty() => {
            return Err(checker.invalid(
                &memo_key,
                "\"\"",
                "a non-empty comment prefix, or no memo key at all",
            ));
        }
        memo => memo,
    };

    let masters_key = join(key, "jetton_masters");
    let written_masters = raw.jetton_masters.unwrap_or_default();
    if role == TonAccountRole::JettonDeposit && written_masters.is_empty() {
        return Err(checker.invalid(
            &masters_key,
            "nothing",
            "at least one allowed jetton master address on a jetton_deposit account",
        ));
    }
    if role != TonAccountRole::JettonDeposit && !written_masters.is_empty() {
        return Err(checker.invalid(
            &masters_key,
            format!("{} address(es)", written_masters.len()),
            format!("no jetton_masters on a {role} account (jetton_deposit only)"),
        ));
    }
    let mut jetton_masters: Vec<TonAddress> = Vec::with_capacity(written_masters.len());
    for (position, master) in written_masters.iter().enumerate() {
        let master_key = index(&masters_key, position);
        let master = ton_account_address(master, &master_key, network, checker)?;
        if jetton_masters.contains(&master) {
            return Err(checker.invalid(
                &master_key,
                show(&master.to_raw()),
                "each jetton master listed once",
            ));
        }
        jetton_masters.push(master);
    }

    Ok(TonAccountConfig {
        role,
        address,
        memo,
        jetton_masters,
    })
}

fn ton_account_address(
    raw: &str,
    key: &str,
    network: &TonNetwork,
    checker: &Checker<'_>,
) -> Result<TonAddress> {
    let parsed = ton_address::parse(raw.trim()).map_err(|reason| {
        checker.invalid(
            key,
            show(raw),
            format!("a TON address: raw `workchain:hex` or user-friendly ({reason})"),
        )
    })?;
    if parsed.testnet_only && *network == TonNetwork::Mainnet {
        return Err(checker.invalid(
            key,
            show(raw),
            "a mainnet address (this user-friendly form carries the testnet-only flag)",
        ));
    }
    Ok(parsed.address)
}

fn inline_liteserver(raw: &RawLiteserver, key: &str, checker: &Checker<'_>) -> Result<Liteserver> {
    let ip_key = join(key, "ip");
    let ip = match &raw.ip {
        toml::Value::Integer(ip) => ipv4_from_integer(*ip),
        toml::Value::String(ip) => ip.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        let written = match &raw.ip {
            toml::Value::String(text) => show(text),
            other => other.to_string(),
        };
        checker.invalid(
            &ip_key,
            written,
            "an IPv4 address: a signed 32-bit integer as in global.config.json, or a dotted string",
        )
    })?;
    let port = checker.integer_u32(
        &join(key, "port"),
        Some(raw.port),
        0,
        1..=u32::from(u16::MAX),
    )?;
    let port = u16::try_from(port).unwrap_or(u16::MAX);
    let public_key = decode_public_key(&raw.key).ok_or_else(|| {
        checker.invalid(
            &join(key, "key"),
            show(&raw.key),
            "base64 of a 32-byte ed25519 public key",
        )
    })?;
    Ok(Liteserver {
        address: SocketAddrV4::new(ip, port),
        public_key,
    })
}

/// `global.config.json` writes IPv4 addresses as signed 32-bit integers; unsigned ones are accepted
/// too.
fn ipv4_from_integer(ip: i64) -> Option<Ipv4Addr> {
    let bits = match i32::try_from(ip) {
        Ok(signed) => u32::from_be_bytes(signed.to_be_bytes()),
        Err(_) => u32::try_from(ip).ok()?,
    };
    Some(Ipv4Addr::from(bits))
}

fn decode_public_key(text: &str) -> Option<[u8; 32]> {
    let bytes = STANDARD.decode(text.trim()).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// Reads and checks a `global.config.json`-style file, returning its text and its liteservers.
/// Errors are the detail of a [`ConfigError::LiteserversFile`].
fn read_liteservers_file(path: &Path) -> std::result::Result<(String, Vec<Liteserver>), String> {
    let cannot_read = |error: std::io::Error| {
        format!("cannot read the file ({error}; relative paths start at the working directory)")
    };
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    let metadata = file.metadata().map_err(cannot_read)?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    let mut text = String::new();
    file.take(LITESERVERS_FILE_MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| format!("cannot read the file as UTF-8 text ({error})"))?;
    if u64::try_from(text.len()).map_or(true, |len| len > LITESERVERS_FILE_MAX_BYTES) {
        return Err(format!("larger than {LITESERVERS_FILE_MAX_BYTES} bytes"));
    }
    let liteservers = parse_global_config(&text)?;
    Ok((text, liteservers))
}

fn parse_global_config(text: &str) -> std::result::Result<Vec<Liteserver>, String> {
    let document: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("not valid JSON ({error})"))?;
    let Some(document) = document.as_object() else {
        return Err("expected a JSON object with the keys of global.config.json".to_owned());
    };
    if let Some(missing) = GLOBAL_CONFIG_KEYS
        .iter()
        .find(|key| !document.contains_key(**key))
    {
        return Err(format!(
            "missing top-level key `{missing}` (the lite client needs {})",
            GLOBAL_CONFIG_KEYS.map(|key| format!("`{key}`")).join(", ")
        ));
    }
    let entries = match document.get("liteservers") {
        Some(serde_json::Value::Array(entries)) if !entries.is_empty() => entries,
        _ => return Err("liteservers: expected a non-empty array".to_owned()),
    };
    entries
        .iter()
        .enumerate()
        .map(|(position, entry)| {
            json_liteserver(entry).map_err(|detail| format!("liteservers[{position}].{detail}"))
        })
        .collect()
}

fn json_liteserver(entry: &serde_json::Value) -> std::result::Result<Liteserver, String> {
    let ip = entry
        .get("ip")
        .and_then(serde_json::Value::as_i64)
        .and_then(ipv4_from_integer)
        .ok_or("ip: expected the IPv4 address as a signed 32-bit integer")?;
    let port = entry
        .get("port")
        .and_then(serde_json::Value::as_u64)
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port != 0)
        .ok_or("port: expected an integer between 1 and 65535")?;
    let id = entry
        .get("id")
        .ok_or("id: missing (expected { \"@type\": \"pub.ed25519\", \"key\": ... })")?;
    if id.get("@type").and_then(serde_json::Value::as_str) != Some("pub.ed25519") {
        return Err("id.@type: expected \"pub.ed25519\"".to_owned());
    }
    let public_key = id
        .get("key")
        .and_then(serde_json::Value::as_str)
        .and_then(decode_public_key)
        .ok_or("id.key: expected base64 of a 32-byte ed25519 public key")?;
    Ok(Liteserver {
        address: SocketAddrV4::new(ip, port),
        public_key,
    })
}

/// A global config document for inline liteservers. The lite client needs the `dht` and
/// `validator` sections to be present but does not use them to reach liteservers, so they are
/// filled with an empty DHT and a zero state placeholder.
fn synthesize_global_config(liteservers: &[Liteserver]) -> String {
    let zero_hash = STANDARD.encode([0_u8; 32]);
    let block = serde_json::json!({
        "workchain": -1,
        "shard": i64::MIN,
        "seqno": 0,
        "root_hash": zero_hash,
        "file_hash": zero_hash,
    });
    let document = serde_json::json!({
        "@type": "config.global",
        "dht": {
            "@type": "dht.config.global",
            "k": 6,
            "a": 3,
            "static_nodes": { "@type": "dht.nodes", "nodes": [] },
        },
        "liteservers": liteservers
            .iter()
            .map(|server| serde_json::json!({
                "ip": server.ip_as_i32(),
                "port": server.address.port(),
                "id": { "@type": "pub.ed25519", "key": server.public_key_base64() },
            }))
            .collect::<Vec<_>>(),
        "validator": {
            "@type": "validator.config.global",
            "zero_state": block,
            "init_block": block,
            "hardforks": [],
        },
    });
    document.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_integers_follow_global_config_json() {
        assert_eq!(ipv4_from_integer(2_130_706_433), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(ipv4_from_integer(-1), Some(Ipv4Addr::BROADCAST));
        assert_eq!(ipv4_from_integer(4_294_967_295), Some(Ipv4Addr::BROADCAST));
        assert_eq!(ipv4_from_integer(4_294_967_296), None);
        let server = Liteserver {
            address: SocketAddrV4::new(Ipv4Addr::new(200, 1, 2, 3), 1),
            public_key: [0; 32],
        };
        assert_eq!(
            ipv4_from_integer(i64::from(server.ip_as_i32())),
            Some(Ipv4Addr::new(200, 1, 2, 3))
        );
    }

    #[test]
    fn synthesized_documents_parse_back_to_the_same_liteservers() {
        let servers = vec![
            Liteserver {
                address: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 46_000),
                public_key: [1; 32],
            },
            Liteserver {
                address: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 443),
                public_key: [2; 32],
            },
        ];
        let text = synthesize_global_config(&servers);
        assert_eq!(parse_global_config(&text), Ok(servers));
    }

    #[test]
    fn global_config_errors_point_inside_the_file() {
        let base = r#"{"@type":"config.global","dht":{},"validator":{},"liteservers":[ENTRY]}"#;
        let cases = [
            (
                r#"{"ip":1,"port":1,"id":{"@type":"pub.ed25519","key":"AAAA"}}"#,
                "liteservers[0].id.key",
            ),
            (
                r#"{"ip":1,"port":0,"id":{"@type":"pub.ed25519","key":"AAAA"}}"#,
                "liteservers[0].port",
            ),
            (r#"{"ip":"1.2.3.4","port":1}"#, "liteservers[0].ip"),
            (
                r#"{"ip":1,"port":1,"id":{"@type":"pub.x","key":"AAAA"}}"#,
                "liteservers[0].id.@type",
            ),
        ];
        for (entry, expected) in cases {
            let error =
                parse_global_config(&base.replace("ENTRY", entry)).expect_err("should be rejected");
            assert!(error.starts_with(expected), "{error}");
        }
        assert!(parse_global_config("{}")
            .expect_err("should be rejected")
            .contains("missing top-level key `@type`"));
        assert!(parse_global_config("[")
            .expect_err("should be rejected")
            .starts_with("not valid JSON"));
    }
}
