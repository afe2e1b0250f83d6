//! The JSON-RPC client of one EVM chain: endpoints tried in order with failover, a request-rate
//! budget, a timeout per request, retries with exponential backoff and jitter, and a metric for
//! every call. Errors classify themselves; URLs only ever appear redacted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{Address, Bytes, B256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{Filter, Log, TransactionReceipt, TransactionRequest};
use alloy::transports::{RpcError, TransportErrorKind};
use backon::{ExponentialBuilder, Retryable};
use tokio::sync::Mutex;

use super::range::{advise, RangeAdvice};
use crate::chain::BlockRef;
use crate::error::{Error, Result};
use crate::metrics::METRICS;

/// Longest a single RPC request may take before it counts as a timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// `eth_call`s per JSON-RPC batch of [`EvmRpc::call_many`] (providers commonly accept 100).
pub const CALL_BATCH_SIZE: usize = 100;
/// Attempts per call before the error goes up (and the listener restarts from its cursor).
pub const MAX_ATTEMPTS: usize = 8;

/// One RPC endpoint: the URL to use and the form that may be shown.
#[derive(Clone)]
pub struct Endpoint {
    /// The full URL (may hold an API key): used for requests only.
    pub url: url::Url,
    /// The redacted form, for logs, errors and metrics.
    pub redacted: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// A block header with what the listener needs from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Number, hash, parent and timestamp.
    pub block: BlockRef,
    /// The block's logs bloom.
    pub logs_bloom: alloy::primitives::Bloom,
}

/// A failed attempt, classified.
#[derive(Debug, Clone)]
struct Failure {
    outcome: &'static str,
    message: String,
    retryable: bool,
    range: RangeAdvice,
}

/// The result of `eth_getLogs` over a range.
#[derive(Debug)]
pub enum LogsAnswer {
    /// The logs of the range.
    Logs(Vec<Log>),
    /// The provider refused the range; the advice says what to try.
    RangeRefused(RangeAdvice),
}

/// Token-bucket-like pacing: one request per `interval`, shared by every call of the chain.
#[derive(Debug)]
struct RateBudget {
    interval: Duration,
    next_slot: Mutex<Instant>,
}

impl RateBudget {
    fn new(requests_per_second: f64) -> Self {
        let interval = if requests_per_second > 0.0 && requests_per_second.is_finite() {
            Duration::from_secs_f64(1.0 / requests_per_second)
        } else {
            Duration::ZERO
        };
        Self {
            interval,
            next_slot: Mutex::new(Instant::now()),
        }
    }

    async fn wait_turn(&self) {
        if self.interval.is_zero() {
            return;
        }
        let wait = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The RPC client of one chain.
pub struct EvmRpc {
    chain: String,
    endpoints: Vec<(Endpoint, RootProvider)>,
    current: AtomicUsize,
    budget: RateBudget,
    max_attempts: usize,
}

impl EvmRpc {
    /// A client over `endpoints` (tried in order) within `requests_per_second`.
    pub fn new(chain: &str, endpoints: Vec<Endpoint>, requests_per_second: f64) -> Self {
        let endpoints = endpoints
            .into_iter()
            .map(|endpoint| {
                let provider = RootProvider::new_http(endpoint.url.clone());
                (endpoint, provider)
            })
            .collect();
        Self {
            chain: chain.to_owned(),
            endpoints,
            current: AtomicUsize::new(0),
            budget: RateBudget::new(requests_per_second),
            max_attempts: MAX_ATTEMPTS,
        }
    }

    /// Overrides how many attempts a call gets (tests use fewer).
    pub fn with_max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The endpoint in use, redacted.
    pub fn current_endpoint(&self) -> String {
        self.endpoints
            .get(self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1))
            .map_or_else(String::new, |(e, _)| e.redacted.clone())
    }

    fn classify(&self, endpoint: &Endpoint, err: RpcError<TransportErrorKind>) -> Failure {
        // Transport errors render the request URL: scrub it before the text goes anywhere.
        let scrub = |text: String| {
            let full = endpoint.url.as_str();
            let trimmed = full.trim_end_matches('/');
            text.replace(full, &endpoint.redacted)
                .replace(trimmed, &endpoint.redacted)
        };
        match err {
            RpcError::ErrorResp(payload) => {
                let message = scrub(payload.message.to_string());
                let range = advise(&message, u64::MAX);
                let outcome = if range == RangeAdvice::NotARangeError {
                    "rpc_error"
                } else {
                    "range_too_large"
                };
                Failure {
                    outcome,
                    message: format!("JSON-RPC error {}: {message}", payload.code),
                    retryable: true,
                    range,
                }
            }
            RpcError::Transport(TransportErrorKind::HttpError(http)) => {
                let body = scrub(http.body.chars().take(300).collect());
                // A rate limit says nothing about the range, whatever its body ("Too Many
                // Requests", "request count exceeded"): it is retried with backoff, not taken
                // as a refusal of the range.
                let range = if http.status == 429 {
                    RangeAdvice::NotARangeError
                } else {
                    advise(&body, u64::MAX)
                };
                let outcome = match http.status {
                    429 => "rate_limited",
                    s if s >= 500 => "server_error",
                    _ if range != RangeAdvice::NotARangeError => "range_too_large",
                    _ => "http_error",
                };
                Failure {
                    outcome,
                    message: format!("HTTP {}: {body}", http.status),
                    retryable: true,
                    range,
                }
            }
            RpcError::DeserError { err, text } => Failure {
                outcome: "malformed",
                message: scrub(format!(
                    "malformed response ({err}): {}",
                    text.chars().take(200).collect::<String>()
                )),
                retryable: true,
                range: advise(&text, u64::MAX),
            },
            other => Failure {
                outcome: "transport",
                message: scrub(other.to_string()),
                retryable: true,
                range: RangeAdvice::NotARangeError,
            },
        }
    }

    /// One attempt on the current endpoint; on failure the next endpoint becomes current.
    async fn attempt<T, F, Fut>(&self, method: &'static str, call: &F) -> Result<T, Failure>
    where
        F: Fn(RootProvider) -> Fut,
        Fut: std::future::Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        let count = self.endpoints.len().max(1);
        let index = self.current.load(Ordering::Relaxed) % count;
        let Some((endpoint, provider)) = self.endpoints.get(index) else {
            return Err(Failure {
                outcome: "transport",
                message: "no RPC endpoint configured".to_owned(),
                retryable: false,
                range: RangeAdvice::NotARangeError,
            });
        };
        self.budget.wait_turn().await;
        let started = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, call(provider.clone())).await;
        METRICS
            .rpc_request_duration_seconds
            .with_label_values(&[&self.chain, method])
            .observe(started.elapsed().as_secs_f64());
        let failure = match result {
            Ok(Ok(value)) => {
                METRICS
                    .rpc_requests_total
                    .with_label_values(&[&self.chain, method, "ok"])
                    .inc();
                return Ok(value);
            }
            Ok(Err(err)) => self.classify(endpoint, err),
            Err(_) => Failure {
                outcome: "timeout",
                message: format!("no answer within {REQUEST_TIMEOUT:?}"),
                retryable: true,
                range: RangeAdvice::NotARangeError,
            },
        };
        METRICS
            .rpc_requests_total
            .with_label_values(&[&self.chain, method, failure.outcome])
            .inc();
        // A range refusal is an answer about the request, not about the endpoint: stay.
        if failure.range == RangeAdvice::NotARangeError && count > 1 {
            let _ = self.current.compare_exchange(
                index,
                (index + 1) % count,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        Err(failure)
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(self.max_attempts.saturating_sub(1))
    }

    fn to_error(&self, method: &'static str, failure: Failure) -> Error {
        Error::Rpc {
            chain: self.chain.clone(),
            method,
            endpoint: self.current_endpoint(),
            message: failure.message,
            retryable: failure.retryable,
        }
    }

    /// Calls with retries: every retryable failure is retried with backoff and jitter on the
    /// next endpoint, up to the attempt limit.
    async fn call_with_retries<T, F, Fut>(&self, method: &'static str, call: F) -> Result<T>
    where
        F: Fn(RootProvider) -> Fut,
        Fut: std::future::Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        let chain = self.chain.clone();
        (|| self.attempt(method, &call))
            .retry(self.backoff())
            .when(|failure: &Failure| failure.retryable)
            .notify(|failure: &Failure, delay: Duration| {
                tracing::warn!(chain = %chain, method, outcome = failure.outcome, error = %failure.message,
                    retry_in = ?delay, "rpc call failed; retrying");
            })
            .await
            .map_err(|failure| self.to_error(method, failure))
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> Result<u64> {
        self.call_with_retries("eth_chainId", |p| async move { p.get_chain_id().await })
            .await
    }

    /// The header at `tag`, or `None` when the node has no such block.
    pub async fn header(&self, tag: BlockNumberOrTag) -> Result<Option<Header>> {
        let block = self
            .call_with_retries("eth_getBlockByNumber", move |p| async move {
                p.get_block_by_number(tag).await
            })
            .await?;
        Ok(block.map(|b| Header {
            block: BlockRef {
                number: b.header.number,
                hash: b.header.hash,
                parent_hash: b.header.parent_hash,
                timestamp: b.header.timestamp,
            },
            logs_bloom: b.header.logs_bloom,
        }))
    }

    /// The header at `number`, failing if the node does not have it.
    pub async fn header_at(&self, number: u64) -> Result<Header> {
        self.header(BlockNumberOrTag::Number(number))
            .await?
            .ok_or_else(|| Error::Inconsistent {
                chain: self.chain.clone(),
                block: number,
                message: "the node has no block at this height".to_owned(),
            })
    }

    /// The latest header.
    pub async fn latest(&self) -> Result<Header> {
        self.header(BlockNumberOrTag::Latest)
            .await?
            .ok_or_else(|| Error::Inconsistent {
                chain: self.chain.clone(),
                block: 0,
                message: "the node returned no latest block".to_owned(),
            })
    }

    /// The hash of block 0: the chain's identity together with its id.
    pub async fn genesis_hash(&self) -> Result<B256> {
        Ok(self.header_at(0).await?.block.hash)
    }

    /// `eth_getLogs` over `filter`. Range refusals are returned (not retried) so the caller can
    /// shrink the range; other failures are retried.
    pub async fn logs(&self, filter: &Filter) -> Result<LogsAnswer> {
        let method = "eth_getLogs";
        let chain = self.chain.clone();
        let result = (|| async {
            match self
                .attempt(method, &|p: RootProvider| {
                    let filter = filter.clone();
                    async move { p.get_logs(&filter).await }
                })
                .await
            {
                Ok(logs) => Ok(LogsAnswer::Logs(logs)),
                Err(failure) if failure.range != RangeAdvice::NotARangeError => {
                    Ok(LogsAnswer::RangeRefused(failure.range))
                }
                Err(failure) => Err(failure),
            }
        })
        .retry(self.backoff())
        .when(|failure: &Failure| failure.retryable)
        .notify(|failure: &Failure, delay: Duration| {
            tracing::warn!(chain = %chain, method, outcome = failure.outcome, error = %failure.message,
                retry_in = ?delay, "rpc call failed; retrying");
        })
        .await;
        result.map_err(|failure| self.to_error(method, failure))
    }
}

/// The answer to an `eth_call`: the returned bytes, or the revert data of a call that reverted
/// (a revert is an answer about the call, not a failure of the node, so it is never retried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallAnswer {
    /// The call returned.
    Returned(Bytes),
    /// The call reverted with this data (possibly empty) and message.
    Reverted {
        /// ABI-encoded revert data.
        data: Bytes,
        /// The node's message.
        message: String,
    },
}

/// Whether a JSON-RPC error is an execution revert (code 3, or a message saying so).
fn revert_of(
    code: i64,
    message: &str,
    data: Option<&serde_json::value::RawValue>,
) -> Option<CallAnswer> {
    let message = message.to_owned();
    if code != 3 && !message.to_ascii_lowercase().contains("revert") {
        return None;
    }
    let data = data
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        .and_then(|hex| hex.parse::<Bytes>().ok())
        .unwrap_or_default();
    Some(CallAnswer::Reverted { data, message })
}

impl EvmRpc {
    /// `eth_call` of `input` on `to` at `block`; a revert comes back as [`CallAnswer::Reverted`].
    pub async fn call(&self, request: TransactionRequest, block: BlockId) -> Result<CallAnswer> {
        self.call_with_retries("eth_call", move |p| {
            let request = request.clone();
            async move {
                match p.call(request).block(block).await {
                    Ok(bytes) => Ok(CallAnswer::Returned(bytes)),
                    Err(RpcError::ErrorResp(payload)) => {
                        match revert_of(payload.code, &payload.message, payload.data.as_deref()) {
                            Some(answer) => Ok(answer),
                            None => Err(RpcError::ErrorResp(payload)),
                        }
                    }
                    Err(err) => Err(err),
                }
            }
        })
        .await
    }

    /// Many `eth_call`s at `block` in JSON-RPC batches of [`CALL_BATCH_SIZE`]: one HTTP round trip
    /// per batch instead of one per call. Answers come back in the order of `calls`. A batch whose
    /// transport fails, or whose item fails other than by reverting, is retried as a whole.
    pub async fn call_many(
        &self,
        calls: &[(Address, Bytes)],
        block: BlockId,
    ) -> Result<Vec<CallAnswer>> {
        let mut answers = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(CALL_BATCH_SIZE) {
            let chunk = chunk.to_vec();
            let batch = self
                .call_with_retries("eth_call", move |p| {
                    let chunk = chunk.clone();
                    async move {
                        let client = p.client();
                        let mut batch = alloy::rpc::client::BatchRequest::new(client);
                        let mut waiters = Vec::with_capacity(chunk.len());
                        for (to, input) in &chunk {
                            let request = TransactionRequest::default()
                                .to(*to)
                                .input(input.clone().into());
                            waiters
                                .push(batch.add_call::<_, Bytes>("eth_call", &(request, block))?);
                        }
                        batch.send().await?;
                        let mut out = Vec::with_capacity(waiters.len());
                        for waiter in waiters {
                            out.push(match waiter.await {
                                Ok(bytes) => CallAnswer::Returned(bytes),
                                Err(RpcError::ErrorResp(payload)) => {
                                    match revert_of(
                                        payload.code,
                                        &payload.message,
                                        payload.data.as_deref(),
                                    ) {
                                        Some(answer) => answer,
                                        None => return Err(RpcError::ErrorResp(payload)),
                                    }
                                }
                                Err(err) => return Err(err),
                            });
                        }
                        Ok(out)
                    }
                })
                .await?;
            answers.extend(batch);
        }
        Ok(answers)
    }

    /// Calls `to` with `input` at `block`.
    pub async fn call_contract(
        &self,
        to: Address,
        input: Bytes,
        block: BlockId,
    ) -> Result<CallAnswer> {
        let request = TransactionRequest::default().to(to).input(input.into());
        self.call(request, block).await
    }

    /// `eth_getTransactionReceipt`: `None` while the transaction is not mined.
    pub async fn receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>> {
        self.call_with_retries("eth_getTransactionReceipt", move |p| async move {
            p.get_transaction_receipt(hash).await
        })
        .await
    }

    /// `eth_getTransactionByHash`, as a request that can be replayed with `eth_call`.
    pub async fn transaction_request(&self, hash: B256) -> Result<Option<TransactionRequest>> {
        let tx = self
            .call_with_retries("eth_getTransactionByHash", move |p| async move {
                p.get_transaction_by_hash(hash).await
            })
            .await?;
        Ok(tx.map(|tx| {
            use alloy::consensus::Transaction as _;
            let mut request = TransactionRequest::default()
                .from(tx.inner.signer())
                .input(tx.input().clone().into())
                .value(tx.value())
                .gas_limit(tx.gas_limit());
            if let Some(to) = tx.to() {
                request = request.to(to);
            }
            request
        }))
    }

    /// `eth_getTransactionCount` of `address` at the latest block: the next nonce it will use.
    pub async fn nonce(&self, address: Address) -> Result<u64> {
        self.call_with_retries("eth_getTransactionCount", move |p| async move {
            p.get_transaction_count(address).await
        })
        .await
    }
}

/// RPC methods chainsync calls (metric series are created for each).
pub const RPC_METHODS: &[&str] = &[
    "eth_chainId",
    "eth_getBlockByNumber",
    "eth_getLogs",
    "eth_call",
    "eth_getTransactionReceipt",
    "eth_getTransactionByHash",
    "eth_getTransactionCount",
];
/// Outcome labels of `chainsync_rpc_requests_total`.
pub const RPC_OUTCOMES: &[&str] = &[
    "ok",
    "rate_limited",
    "server_error",
    "http_error",
    "rpc_error",
    "range_too_large",
    "timeout",
    "transport",
    "malformed",
];
