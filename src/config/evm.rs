//! `[[evm]]`: the EVM chains to follow and the contracts to index on each.

use std::fmt;
use std::time::Duration;

use alloy::primitives::Address;

use super::environment::evm_rpc_urls_variable;
use super::error::Result;
use super::keys::{index, join, show};
use super::raw::{RawContract, RawContractRole, RawEvmChain};
use super::validate::Checker;
use crate::redact::SecretUrl;

/// Confirmation depth when neither `confirmations` nor `finality` is set: deep enough for
/// Ethereum mainnet's observed reorgs, which have stayed well under a dozen blocks since the merge.
const DEFAULT_CONFIRMATIONS: u64 = 12;
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_MAX_BLOCK_RANGE: u64 = 2_000;
const DEFAULT_REQUESTS_PER_SECOND: f64 = 25.0;
/// Block hashes kept for reorg detection; raised to the confirmation depth when that is deeper.
const DEFAULT_REORG_WINDOW: u64 = 128;
/// Upper bound of `reorg_window` (and so of `confirmations`): the window is kept in memory.
const REORG_WINDOW_MAX: u64 = 100_000;
const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(15 * 60);
const DEFAULT_STUCK_AFTER_BLOCKS: u64 = 300;
const DEFAULT_DROPPED_AFTER: Duration = Duration::from_secs(30 * 60);
const DEFAULT_HEAD_STALL_AFTER: Duration = Duration::from_secs(2 * 60);
const DEFAULT_OVERDUE_GRACE: Duration = Duration::from_secs(60 * 60);
const DEFAULT_DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Bounds of `requests_per_second`: below the minimum the pause between requests (over 16 minutes)
/// stops making sense, above the maximum no provider serves one client.
const REQUESTS_PER_SECOND_RANGE: (f64, f64) = (0.001, 100_000.0);

/// One EVM chain to follow (an `[[evm]]` entry), validated.
#[derive(Debug, Clone, PartialEq)]
pub struct EvmChainConfig {
    /// Unique name, `[a-z0-9_-]{1,32}`; the `chain` label of every metric.
    pub name: String,
    /// Expected `eth_chainId`, checked at start-up.
    pub chain_id: u64,
    /// JSON-RPC endpoints (http/https), tried in order: the first that answers is used.
    pub rpc_urls: Vec<SecretUrl>,
    /// Optional WebSocket endpoint (ws/wss) for the `newHeads` subscription; polling otherwise.
    pub ws_url: Option<SecretUrl>,
    /// When a block counts as confirmed.
    pub confirmation: ConfirmationPolicy,
    /// How often the head is polled when there is no WebSocket subscription.
    pub poll_interval: Duration,
    /// Largest block span of one `eth_getLogs` request (>= 1).
    pub max_block_range: u64,
    /// Request budget per second against this chain's endpoints (> 0).
    pub requests_per_second: f64,
    /// How many recent block hashes are kept to detect reorgs; at least the confirmation depth.
    pub reorg_window: u64,
    /// A transfer not final after this long is flagged stuck.
    pub stuck_after: Duration,
    /// A transfer not final after this many blocks is flagged stuck.
    pub stuck_after_blocks: u64,
    /// How long a reorged transfer may wait to be re-included before it fails as dropped.
    pub dropped_after: Duration,
    /// No new head for this long marks the chain as stalled.
    pub head_stall_after: Duration,
    /// A stream past its end time plus this grace and still not settled is overdue.
    pub overdue_grace: Duration,
    /// How often virtual balances are compared with the on-chain values.
    pub drift_check_interval: Duration,
    /// The contracts to index.
    pub contracts: Vec<ContractConfig>,
}

/// When an EVM block counts as confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmationPolicy {
    /// Confirmed once `head - block + 1 >= depth`: the block itself counts as the first
    /// confirmation, so depth 1 means "in the head block".
    Depth(u64),
    /// Confirmed once the node's `finalized` block tag has reached it.
    Finalized,
}

impl fmt::Display for ConfirmationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Depth(depth) => write!(f, "{depth} confirmations"),
            Self::Finalized => f.write_str("finalized tag"),
        }
    }
}

/// One contract to index on an EVM chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractConfig {
    /// What the contract is, which decides the events decoded from it.
    pub role: ContractRole,
    /// The contract address.
    pub address: Address,
    /// First block to index (the deployment block, or 0).
    pub start_block: u64,
}

/// The kinds of contract chainsync indexes (see the stream contracts reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContractRole {
    /// The stream lock manager: streams, claims, settlements, virtual balances.
    StreamLockManager,
    /// The producer registry.
    ProducerStorage,
    /// A producer contract.
    Producer,
    /// An ERC-20 token used for payments.
    Token,
}

impl ContractRole {
    /// The role as written in configuration; also the `contract` metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::StreamLockManager => "stream_lock_manager",
            Self::ProducerStorage => "producer_storage",
            Self::Producer => "producer",
            Self::Token => "token",
        }
    }
}

impl fmt::Display for ContractRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<RawContractRole> for ContractRole {
    fn from(raw: RawContractRole) -> Self {
        match raw {
            RawContractRole::StreamLockManager => Self::StreamLockManager,
            RawContractRole::ProducerStorage => Self::ProducerStorage,
            RawContractRole::Producer => Self::Producer,
            RawContractRole::Token => Self::Token,
        }
    }
}

/// Validates one `[[evm]]` entry; `key` is its key (`evm[devnet]`).
pub(super) fn validate_chain(
    raw: RawEvmChain,
    key: &str,
    checker: &Checker<'_>,
) -> Result<EvmChainConfig> {
    let field = |name: &str| join(key, name);
    let name = checker.name(&field("name"), &raw.name)?;
    let chain_id = checker.integer(&field("chain_id"), Some(raw.chain_id), 0, 1..=u64::MAX)?;

    let rpc_urls_key = field("rpc_urls");
    let rpc_urls = match raw.rpc_urls {
        Some(urls) if !urls.is_empty() => urls
            .iter()
            .enumerate()
            .map(|(position, url)| {
                checker.url(&index(&rpc_urls_key, position), url, &["http", "https"])
            })
            .collect::<Result<Vec<_>>>()?,
        written => {
            let value = if written.is_some() { "[]" } else { "nothing" };
            let expected = format!(
                "at least one http:// or https:// URL (in the file, or in {} as a comma-separated list)",
                evm_rpc_urls_variable(&name)
            );
            return Err(checker.invalid(&rpc_urls_key, value, expected));
        }
    };
    let ws_url = raw
        .ws_url
        .as_deref()
        .map(|url| checker.url(&field("ws_url"), url, &["ws", "wss"]))
        .transpose()?;

    let confirmation = match (raw.confirmations, raw.finality) {
        (Some(depth), Some(_)) => {
            return Err(checker.invalid(
                &field("finality"),
                format!("\"finalized\" together with confirmations = {depth}"),
                "either confirmations or finality, not both",
            ));
        }
        (None, Some(_)) => ConfirmationPolicy::Finalized,
        (depth, None) => ConfirmationPolicy::Depth(checker.integer(
            &field("confirmations"),
            depth,
            DEFAULT_CONFIRMATIONS,
            1..=REORG_WINDOW_MAX,
        )?),
    };

    let reorg_window_key = field("reorg_window");
    let reorg_window = match (raw.reorg_window, confirmation) {
        (None, ConfirmationPolicy::Depth(depth)) => DEFAULT_REORG_WINDOW.max(depth),
        (written, _) => checker.integer(
            &reorg_window_key,
            written,
            DEFAULT_REORG_WINDOW,
            1..=REORG_WINDOW_MAX,
        )?,
    };
    if let ConfirmationPolicy::Depth(depth) = confirmation {
        if reorg_window < depth {
            // A reorg deeper than the window cannot be located, so every block that can still be
            // unconfirmed must have its hash in the window.
            return Err(checker.invalid(
                &reorg_window_key,
                reorg_window.to_string(),
                format!("an integer >= confirmations ({depth})"),
            ));
        }
    }

    let requests_per_second = match raw.requests_per_second {
        None => DEFAULT_REQUESTS_PER_SECOND,
        Some(rate)
            if (REQUESTS_PER_SECOND_RANGE.0..=REQUESTS_PER_SECOND_RANGE.1).contains(&rate) =>
        {
            rate
        }
        Some(rate) => {
            let (min, max) = REQUESTS_PER_SECOND_RANGE;
            return Err(checker.invalid(
                &field("requests_per_second"),
                rate.to_string(),
                format!("a number between {min} and {max}"),
            ));
        }
    };

    let duration = |name: &str, written: Option<&str>, default| {
        checker.duration(&field(name), written, default, false)
    };
    let poll_interval = duration(
        "poll_interval",
        raw.poll_interval.as_deref(),
        DEFAULT_POLL_INTERVAL,
    )?;
    let head_stall_after = duration(
        "head_stall_after",
        raw.head_stall_after.as_deref(),
        DEFAULT_HEAD_STALL_AFTER,
    )?;
    if head_stall_after <= poll_interval {
        return Err(checker.invalid(
            &field("head_stall_after"),
            show(&humantime::format_duration(head_stall_after).to_string()),
            format!(
                "a duration longer than poll_interval ({}), or every poll would look like a stall",
                humantime::format_duration(poll_interval)
            ),
        ));
    }

    let contracts_key = field("contracts");
    let mut contracts: Vec<ContractConfig> = Vec::with_capacity(raw.contracts.len());
    for (position, contract) in raw.contracts.into_iter().enumerate() {
        let contract_key = index(&contracts_key, position);
        let contract = validate_contract(contract, &contract_key, checker)?;
        if let Some(first) = contracts
            .iter()
            .position(|seen| seen.address == contract.address)
        {
            return Err(checker.invalid(
                &join(&contract_key, "address"),
                show(&contract.address.to_checksum(None)),
                format!(
                    "an address not already listed ({} has it)",
                    index(&contracts_key, first)
                ),
            ));
        }
        contracts.push(contract);
    }

    Ok(EvmChainConfig {
        name,
        chain_id,
        rpc_urls,
        ws_url,
        confirmation,
        poll_interval,
        max_block_range: checker.integer(
            &field("max_block_range"),
            raw.max_block_range,
            DEFAULT_MAX_BLOCK_RANGE,
            1..=u64::MAX,
        )?,
        requests_per_second,
        reorg_window,
        stuck_after: duration(
            "stuck_after",
            raw.stuck_after.as_deref(),
            DEFAULT_STUCK_AFTER,
        )?,
        stuck_after_blocks: checker.integer(
            &field("stuck_after_blocks"),
            raw.stuck_after_blocks,
            DEFAULT_STUCK_AFTER_BLOCKS,
            1..=u64::MAX,
        )?,
        dropped_after: duration(
            "dropped_after",
            raw.dropped_after.as_deref(),
            DEFAULT_DROPPED_AFTER,
        )?,
        head_stall_after,
        overdue_grace: duration(
            "overdue_grace",
            raw.overdue_grace.as_deref(),
            DEFAULT_OVERDUE_GRACE,
        )?,
        drift_check_interval: duration(
            "drift_check_interval",
            raw.drift_check_interval.as_deref(),
            DEFAULT_DRIFT_CHECK_INTERVAL,
        )?,
        contracts,
    })
}

fn validate_contract(raw: RawContract, key: &str, checker: &Checker<'_>) -> Result<ContractConfig> {
    let address_key = join(key, "address");
    let address = parse_address(&raw.address)
        .map_err(|expected| checker.invalid(&address_key, show(&raw.address), expected))?;
    Ok(ContractConfig {
        role: raw.role.into(),
        address,
        start_block: checker.integer(
            &join(key, "start_block"),
            raw.start_block,
            0,
            0..=u64::MAX,
        )?,
    })
}

/// Parses `0x` + 40 hex digits. All-lowercase and all-uppercase digits are accepted as they are;
/// mixed case is an EIP-55 checksum and must be right.
///
/// The error does not suggest the correctly checksummed form: a failing checksum usually means a
/// mistyped address, and printing "the right one" would invite pasting the typo back in.
pub(super) fn parse_address(s: &str) -> std::result::Result<Address, &'static str> {
    const SHAPE: &str = "a 20-byte address: 0x followed by 40 hex digits";
    let Some(digits) = s.strip_prefix("0x") else {
        return Err(SHAPE);
    };
    if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SHAPE);
    }
    let address: Address = s.parse().map_err(|_| SHAPE)?;
    let mixed_case = digits.bytes().any(|b| b.is_ascii_lowercase())
        && digits.bytes().any(|b| b.is_ascii_uppercase());
    if mixed_case && address.to_checksum(None) != s {
        return Err("a valid EIP-55 checksum in a mixed-case address (check it for a typo, or write it in lowercase)");
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_eip55_only_when_mixed_case() {
        let checksummed = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
        let expected = parse_address(checksummed).expect("valid checksum");
        assert_eq!(parse_address(&checksummed.to_lowercase()), Ok(expected));
        assert_eq!(
            parse_address(&format!("0x{}", checksummed[2..].to_uppercase())),
            Ok(expected)
        );
        let typo = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92267";
        assert!(parse_address(typo)
            .expect_err("should be rejected")
            .contains("EIP-55"));
        let swapped_case = "0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
        assert!(parse_address(swapped_case)
            .expect_err("should be rejected")
            .contains("EIP-55"));
        for malformed in [
            "",
            "0x",
            "f39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
            "0xf39F",
            "0xg39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        ] {
            assert!(
                parse_address(malformed)
                    .expect_err("should be rejected")
                    .contains("40 hex digits"),
                "{malformed}"
            );
        }
    }
}
