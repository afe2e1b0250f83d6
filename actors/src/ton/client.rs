//! The liteserver client of one TON network: one lite client per liteserver, requests sent to one
//! liteserver at a time and rotated to the next on failure, retries with exponential backoff and
//! jitter, a timeout per request and a metric for every call.
//!
//! The lite client's own retries are off (`retries = 0`): with ours around it they would multiply.
//! Each liteserver gets its own client because the crate's client sends every request to all of
//! its liteservers at once; rotating ourselves keeps one request per attempt and names the
//! liteserver that failed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use everscale_types::boc::de::{BocHeader, Options};
use everscale_types::cell::CellSlice;
use everscale_types::merkle::MerkleProof;
use everscale_types::models::ShardState;
use everscale_types::prelude::{Boc, Cell, CellFamily, HashBytes, Load};
use rand::Rng;
use ton::block_tlb::TVMStack;
use ton::contracts::TVMGetMethodID;
use ton::errors::TonError;
use ton::lite_client::{LiteClient, LiteReqParams};
use ton::ton_core::cell::TonCell;
use ton::ton_core::traits::tlb::TLB;
use ton::ton_core::types::TonAddress;
use ton_liteapi::tl::common::{AccountId, BlockIdExt, Int256};
use ton_liteapi::tl::request::{GetAccountState, GetTransactions, Request, RunSmcMethod};
use ton_liteapi::tl::response::{MasterchainInfo, Response};

use crate::error::{Error, Result};
use crate::metrics::METRICS;

/// Liteserver requests, as the `method` label of the request metrics.
pub const LITE_METHODS: &[&str] = &[
    "get_masterchain_info",
    "get_account_state",
    "get_transactions",
    "run_smc_method",
];
/// Outcomes of a liteserver request, as the `outcome` label.
pub const LITE_OUTCOMES: &[&str] = &[
    "ok",
    "not_ready",
    "lt_not_in_db",
    "server_error",
    "timeout",
    "transport",
    "malformed",
];
/// Attempts per request (across liteservers) before the error goes up; the listener then retries
/// the whole poll from its cursors, so nothing is skipped.
pub const MAX_ATTEMPTS: usize = 6;
/// First backoff delay; doubled per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest backoff delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3);
/// Connections kept open to each liteserver: requests of one poll run this many at a time.
pub const CONNECTIONS_PER_LITESERVER: u32 = 8;
/// Transactions per `getTransactions` page (liteservers answer at most 16).
pub const PAGE_SIZE: u32 = 16;

/// An account's last transaction: its logical time and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId {
    /// Logical time.
    pub lt: u64,
    /// Representation hash of the transaction cell.
    pub hash: [u8; 32],
}

/// One transaction as returned by `getTransactions`: its id and its own BoC.
#[derive(Debug, Clone)]
pub struct RawTransaction {
    /// Logical time and hash.
    pub id: TxId,
    /// The transaction as a single-root bag of cells.
    pub boc: Vec<u8>,
}

struct Server {
    label: String,
    client: LiteClient,
}

/// The liteservers of one network.
pub struct TonClient {
    chain: String,
    servers: Vec<Server>,
    current: AtomicUsize,
    request_timeout: Duration,
    max_attempts: usize,
}

impl std::fmt::Debug for TonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<&str> = self.servers.iter().map(|s| s.label.as_str()).collect();
        f.debug_struct("TonClient")
            .field("chain", &self.chain)
            .field("liteservers", &labels)
            .finish()
    }
}

/// How a failed attempt is classified.
struct Failure {
    outcome: &'static str,
    message: String,
    retryable: bool,
}

fn classify(error: &TonError) -> Failure {
    let message = error.to_string();
    let (outcome, retryable) = match error {
        TonError::LiteClientErrorResponse(response) => {
            let text = response.message.to_string().to_ascii_lowercase();
            if text.contains("lt not in db") {
                ("lt_not_in_db", true)
            } else if response.code == 651
                || text.contains("not ready")
                || text.contains("notready")
            {
                ("not_ready", true)
            } else {
                ("server_error", true)
            }
        }
        TonError::LiteClientReqTimeout(_)
        | TonError::LiteClientConnTimeout(_)
        | TonError::NetRequestTimeout { .. } => ("timeout", true),
        TonError::LiteClientWrongResponse(..) => ("malformed", false),
        _ => ("transport", true),
    };
    Failure {
        outcome,
        message,
        retryable,
    }
}

/// Reads the liteservers of a `global.config.json` document and returns, per liteserver, its
/// `ip:port` label and the same document reduced to that one liteserver.
fn split_global_config(json: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let document: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("liteservers document: {e}"))?;
    let servers = document
        .get("liteservers")
        .and_then(serde_json::Value::as_array)
        .ok_or("liteservers document has no `liteservers` array")?;
    let mut out = Vec::with_capacity(servers.len());
    for server in servers {
        let ip = server
            .get("ip")
            .and_then(serde_json::Value::as_i64)
            .ok_or("liteserver entry without a numeric `ip`")?;
        let port = server
            .get("port")
            .and_then(serde_json::Value::as_u64)
            .ok_or("liteserver entry without a numeric `port`")?;
        let ip = std::net::Ipv4Addr::from((ip as i32) as u32);
        let mut single = document.clone();
        single["liteservers"] = serde_json::Value::Array(vec![server.clone()]);
        out.push((format!("{ip}:{port}"), single.to_string()));
    }
    if out.is_empty() {
        return Err("liteservers document lists no liteserver".into());
    }
    Ok(out)
}

fn account_id(address: &TonAddress) -> AccountId {
    AccountId {
        workchain: address.workchain,
        id: Int256(*address.hash.as_slice_sized()),
    }
}

/// One transaction of a `getTransactions` answer, with the header fields that place it.
struct ListedTx {
    account: [u8; 32],
    id: TxId,
    prev: TxId,
    boc: Vec<u8>,
}

/// Splits a list of transactions (a multi-root bag of cells) into one single-root BoC per
/// transaction, in order, each with its account, hash, logical time and predecessor.
fn split_roots(boc: &[u8]) -> std::result::Result<Vec<ListedTx>, String> {
    if boc.is_empty() {
        return Ok(Vec::new());
    }
    let header = BocHeader::decode(boc, &Options::default()).map_err(|e| e.to_string())?;
    let roots: Vec<u32> = header.roots().to_vec();
    let cells = header
        .finalize(&mut Cell::empty_context())
        .map_err(|e| e.to_string())?;
    roots
        .into_iter()
        .map(|index| {
            let cell = cells
                .get(index)
                .ok_or_else(|| format!("root {index} missing"))?;
            // transaction$0111 account_addr:bits256 lt:uint64 prev_trans_hash:bits256
            //   prev_trans_lt:uint64 ...
            let mut slice = cell.as_slice().map_err(|e| e.to_string())?;
            let tag = slice.load_small_uint(4).map_err(|e| e.to_string())?;
            if tag != 0b0111 {
                return Err(format!("root {index} is not a transaction (tag {tag:#x})"));
            }
            let account = slice.load_u256().map_err(|e| e.to_string())?;
            let lt = slice.load_u64().map_err(|e| e.to_string())?;
            let prev_hash = slice.load_u256().map_err(|e| e.to_string())?;
            let prev_lt = slice.load_u64().map_err(|e| e.to_string())?;
            Ok(ListedTx {
                account: account.0,
                id: TxId {
                    lt,
                    hash: cell.repr_hash().0,
                },
                prev: TxId {
                    lt: prev_lt,
                    hash: prev_hash.0,
                },
                boc: Boc::encode(cell),
            })
        })
        .collect()
}

/// What an answer of the wrong type is called in errors (its variant, not its contents).
fn unexpected(answer: &Response) -> String {
    let name = format!("{answer:?}");
    let name = name.split(['(', ' ', '{']).next().unwrap_or_default();
    format!("unexpected answer {name}")
}

/// Reads the account's last transaction from a `getAccountState` proof: the second root is the
/// Merkle proof of the shard state, whose accounts dictionary holds the `ShardAccount` with
/// `last_trans_lt` and `last_trans_hash`. `None` when the account has no transaction.
pub fn last_transaction_from_proof(
    proof: &[u8],
    address: &TonAddress,
) -> std::result::Result<Option<TxId>, String> {
    let header = BocHeader::decode(proof, &Options::default()).map_err(|e| e.to_string())?;
    let roots: Vec<u32> = header.roots().to_vec();
    let cells = header
        .finalize(&mut Cell::empty_context())
        .map_err(|e| e.to_string())?;
    let root = roots
        .get(1)
        .and_then(|index| cells.get(*index))
        .ok_or("state proof has no second root (the shard state proof)")?;
    let mut slice = CellSlice::new(root.as_ref()).map_err(|e| format!("state proof: {e}"))?;
    let merkle = MerkleProof::load_from(&mut slice).map_err(|e| format!("merkle proof: {e}"))?;
    let state: ShardState = merkle
        .cell
        .parse()
        .map_err(|e| format!("shard state: {e}"))?;
    let ShardState::Unsplit(state) = state else {
        return Err("split shard state in an account proof".into());
    };
    let accounts = state
        .load_accounts()
        .map_err(|e| format!("shard accounts: {e}"))?;
    let key = HashBytes(*address.hash.as_slice_sized());
    let Some((_, shard_account)) = accounts
        .get(key)
        .map_err(|e| format!("account entry: {e}"))?
    else {
        return Ok(None);
    };
    if shard_account.last_trans_lt == 0 {
        return Ok(None);
    }
    Ok(Some(TxId {
        lt: shard_account.last_trans_lt,
        hash: shard_account.last_trans_hash.0,
    }))
}

impl TonClient {
    /// Builds one lite client per liteserver of the `global.config.json` document. Connections
    /// open lazily on the first request.
    pub fn new(chain: &str, global_config_json: &str, request_timeout: Duration) -> Result<Self> {
        let invalid = |message: String| Error::Rpc {
            chain: chain.to_owned(),
            method: "configure",
            endpoint: "liteservers".into(),
            message,
            retryable: false,
        };
        let mut servers = Vec::new();
        for (label, json) in split_global_config(global_config_json).map_err(invalid)? {
            let client = LiteClient::builder()
                .and_then(|b| b.with_net_config_json(&json))
                .and_then(|b| {
                    b.with_default_req_params(LiteReqParams::new(
                        0,
                        0,
                        request_timeout.as_millis() as u64,
                    ))
                    .with_connections_per_node(CONNECTIONS_PER_LITESERVER)
                    .with_conn_timeout(request_timeout)
                    .build()
                })
                .map_err(|e| invalid(format!("liteserver {label}: {e}")))?;
            servers.push(Server { label, client });
        }
        Ok(Self {
            chain: chain.to_owned(),
            servers,
            current: AtomicUsize::new(0),
            request_timeout,
            max_attempts: MAX_ATTEMPTS,
        })
    }

    /// Sets the attempts per request (at least 1); tests of the error path use few.
    pub fn with_max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The chain name this client serves.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// The liteserver labels (`ip:port`), in rotation order.
    pub fn liteservers(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.label.clone()).collect()
    }

    /// Sends one request, rotating liteservers and backing off between attempts. `accept` turns
    /// an answer into its value or says what is wrong with it: a wrong or inconsistent answer
    /// counts as a `malformed` failure of that liteserver, and the next one is asked.
    async fn call<T>(
        &self,
        method: &'static str,
        request: Request,
        accept: impl Fn(Response) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let mut delay = FIRST_BACKOFF;
        let mut last: Option<(String, Failure)> = None;
        let params = LiteReqParams::new(0, 0, self.request_timeout.as_millis() as u64);
        for attempt in 1..=self.max_attempts {
            let index = self.current.load(Ordering::Relaxed) % self.servers.len();
            let server = &self.servers[index];
            let started = Instant::now();
            let result = server
                .client
                .exec(request.clone(), None, Some(params))
                .await;
            METRICS
                .rpc_request_duration_seconds
                .with_label_values(&[&self.chain, method])
                .observe(started.elapsed().as_secs_f64());
            let failure = match result {
                Ok(Response::Error(e)) => classify(&TonError::LiteClientErrorResponse(e)),
                Ok(response) => match accept(response) {
                    Ok(value) => {
                        METRICS
                            .rpc_requests_total
                            .with_label_values(&[&self.chain, method, "ok"])
                            .inc();
                        return Ok(value);
                    }
                    Err(message) => Failure {
                        outcome: "malformed",
                        message,
                        retryable: true,
                    },
                },
                Err(error) => classify(&error),
            };
            METRICS
                .rpc_requests_total
                .with_label_values(&[&self.chain, method, failure.outcome])
                .inc();
            tracing::warn!(
                chain = %self.chain,
                liteserver = %server.label,
                method,
                attempt,
                outcome = failure.outcome,
                error = %failure.message,
                "liteserver request failed"
            );
            let retryable = failure.retryable;
            last = Some((server.label.clone(), failure));
            if !retryable {
                break;
            }
            // Next attempt on the next liteserver (unless another request already rotated).
            let _ = self.current.compare_exchange(
                index,
                (index + 1) % self.servers.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            if attempt < self.max_attempts {
                let jitter = rand::thread_rng().gen_range(0..=delay.as_millis() as u64 / 4);
                tokio::time::sleep(delay + Duration::from_millis(jitter)).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
        let (endpoint, failure) = last.unwrap_or_else(|| {
            (
                String::new(),
                Failure {
                    outcome: "transport",
                    message: "no attempt made".into(),
                    retryable: true,
                },
            )
        });
        Err(Error::Rpc {
            chain: self.chain.clone(),
            method,
            endpoint,
            message: format!("{} ({})", failure.message, failure.outcome),
            retryable: failure.retryable,
        })
    }

    fn malformed(&self, method: &'static str, message: impl Into<String>) -> Error {
        Error::Rpc {
            chain: self.chain.clone(),
            method,
            endpoint: "any".into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// The latest masterchain block and the network's zero state.
    pub async fn masterchain_info(&self) -> Result<MasterchainInfo> {
        const METHOD: &str = "get_masterchain_info";
        self.call(METHOD, Request::GetMasterchainInfo, |answer| match answer {
            Response::MasterchainInfo(info) => Ok(info),
            other => Err(unexpected(&other)),
        })
        .await
    }

    /// The account's last transaction in the state of masterchain block `block`; `None` for an
    /// account without transactions.
    pub async fn last_transaction(
        &self,
        block: &BlockIdExt,
        address: &TonAddress,
    ) -> Result<Option<TxId>> {
        const METHOD: &str = "get_account_state";
        let request = Request::GetAccountState(GetAccountState {
            id: block.clone(),
            account: account_id(address),
        });
        self.call(METHOD, request, |answer| match answer {
            Response::AccountState(state) => last_transaction_from_proof(&state.proof, address)
                .map_err(|e| format!("account {address}: {e}")),
            other => Err(unexpected(&other)),
        })
        .await
    }

    /// Up to `count` transactions of the account, newest first, starting with `from` itself and
    /// following the prev links; an answer that is not that chain is refused.
    pub async fn transactions(
        &self,
        address: &TonAddress,
        from: TxId,
        count: u32,
    ) -> Result<Vec<RawTransaction>> {
        const METHOD: &str = "get_transactions";
        let request = Request::GetTransactions(GetTransactions {
            count,
            account: account_id(address),
            lt: from.lt,
            hash: Int256(from.hash),
        });
        self.call(METHOD, request, |answer| {
            let Response::TransactionList(list) = answer else {
                return Err(unexpected(&answer));
            };
            let roots = split_roots(&list.transactions)
                .map_err(|e| format!("account {address}: transaction list: {e}"))?;
            // The list must be the chain asked for: `from` first, then each transaction's
            // predecessor. Anything else (nothing, a gap, another account's transaction) is
            // refused.
            if roots.is_empty() {
                return Err(format!(
                    "account {address}: empty transaction list for lt {}",
                    from.lt
                ));
            }
            let mut expected = from;
            let mut out = Vec::with_capacity(roots.len());
            for root in roots {
                if root.account != *address.hash.as_slice_sized() {
                    return Err(format!(
                        "account {address}: transaction list holds a transaction of account {}",
                        hex::encode(root.account)
                    ));
                }
                if root.id != expected {
                    return Err(format!(
                        "account {address}: transaction list does not follow the prev links: \
                         expected lt {} hash {}, got lt {} hash {}",
                        expected.lt,
                        hex::encode(expected.hash),
                        root.id.lt,
                        hex::encode(root.id.hash)
                    ));
                }
                expected = root.prev;
                out.push(RawTransaction {
                    id: root.id,
                    boc: root.boc,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Runs the jetton master's `get_wallet_address(owner)` at masterchain block `block`.
    pub async fn jetton_wallet(
        &self,
        block: &BlockIdExt,
        master: &TonAddress,
        owner: &TonAddress,
    ) -> Result<TonAddress> {
        const METHOD: &str = "run_smc_method";
        let mut stack = TVMStack::default();
        let owner_cell: TonCell = owner
            .to_cell()
            .map_err(|e| self.malformed(METHOD, format!("owner address: {e}")))?;
        stack.push_cell_slice(owner_cell);
        let params = stack
            .to_boc()
            .map_err(|e| self.malformed(METHOD, format!("stack: {e}")))?;
        let request = Request::RunSmcMethod(RunSmcMethod {
            // Bit 2: return the result stack.
            mode: 4,
            id: block.clone(),
            account: account_id(master),
            method_id: TVMGetMethodID::from("get_wallet_address").to_id() as u64,
            params,
        });
        let result = self
            .call(METHOD, request, |answer| match answer {
                Response::RunMethodResult(result) => Ok(result),
                other => Err(unexpected(&other)),
            })
            .await?;
        if result.exit_code != 0 && result.exit_code != 1 {
            return Err(self.malformed(
                METHOD,
                format!(
                    "get_wallet_address on {master} exited with code {}",
                    result.exit_code
                ),
            ));
        }
        let bytes = result
            .result
            .ok_or_else(|| self.malformed(METHOD, "no result stack"))?;
        let mut stack = TVMStack::from_boc(bytes)
            .map_err(|e| self.malformed(METHOD, format!("result stack: {e}")))?;
        let value = stack
            .pop_checked()
            .map_err(|e| self.malformed(METHOD, format!("result stack: {e}")))?;
        let ton::block_tlb::TVMStackValue::CellSlice(slice) = value else {
            return Err(self.malformed(METHOD, "result is not an address slice"));
        };
        let cell = slice
            .to_cell()
            .map_err(|e| self.malformed(METHOD, format!("result slice: {e}")))?;
        TonAddress::from_cell(&cell)
            .map_err(|e| self.malformed(METHOD, format!("result address: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_config_is_split_per_liteserver() {
        let json = r#"{"@type":"config.global","dht":{},"validator":{},
            "liteservers":[{"ip":2130706433,"port":46000,"id":{"@type":"pub.ed25519","key":"a"}},
                           {"ip":-1062731775,"port":5,"id":{"@type":"pub.ed25519","key":"b"}}]}"#;
        let split = split_global_config(json).expect("valid document");
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].0, "127.0.0.1:46000");
        assert_eq!(split[1].0, "192.168.0.1:5");
        let second: serde_json::Value = serde_json::from_str(&split[1].1).expect("json");
        assert_eq!(second["liteservers"].as_array().map(Vec::len), Some(1));
        assert_eq!(second["liteservers"][0]["id"]["key"], "b");
        assert!(split_global_config(r#"{"liteservers":[]}"#).is_err());
    }
}
