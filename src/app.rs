//! The composition root: pools, migrations, one arbiter per chain pipeline, the API and the
//! operations listener, and graceful shutdown.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use alloy::primitives::{Address, B256};
use alloy::rpc::types::Filter;
use anyhow::{bail, Context as _};
use chainsync_actors::listener::evm::{EvmListener, EvmListenerSettings};
use chainsync_actors::listener::rpc::{Endpoint, EvmRpc, LogsAnswer};
use chainsync_actors::messages::Retention;
use chainsync_actors::metrics::METRICS;
use chainsync_actors::reconciler::policy::{ConfirmationRule, ReconcilePolicy};
use chainsync_actors::reconciler::{Reconciler, ReconcilerSettings, SystemClock};
use chainsync_actors::ton::decode::TonAccount;
use chainsync_actors::ton::listener::{TonListener, TonListenerSettings, WatchedAccount};
use chainsync_actors::ton::store::TonPolicy;
use chainsync_actors::writer::{self, store, StoreWriter};
use sqlx::{PgPool, Row};

use crate::config::TonAddress as ConfigTonAddress;
use crate::config::{Config, ConfirmationPolicy, EvmChainConfig, RetentionConfig};
use crate::config::{TonAccountRole, TonNetworkConfig};
use crate::redact::SecretUrl;
use crate::telemetry::{ChainState, Readiness};
use crate::{api, db, telemetry};

/// The database URL to use: `DATABASE_URL` is already applied by the configuration loader.
fn database_url(config: &Config) -> String {
    config.database.url.expose().to_owned()
}

fn endpoint(url: &SecretUrl) -> anyhow::Result<Endpoint> {
    Ok(Endpoint {
        url: url
            .expose()
            .parse()
            .with_context(|| format!("invalid URL {}", url.redacted()))?,
        redacted: url.redacted(),
    })
}

fn listener_settings(chain: &EvmChainConfig) -> anyhow::Result<EvmListenerSettings> {
    Ok(EvmListenerSettings {
        chain: chain.name.clone(),
        chain_id: chain.chain_id,
        endpoints: chain
            .rpc_urls
            .iter()
            .map(endpoint)
            .collect::<anyhow::Result<_>>()?,
        ws_endpoint: chain.ws_url.as_ref().map(endpoint).transpose()?,
        poll_interval: chain.poll_interval,
        max_block_range: chain.max_block_range,
        requests_per_second: chain.requests_per_second,
        reorg_window: chain.reorg_window,
        contracts: chain
            .contracts
            .iter()
            .map(|c| (c.address, c.role.as_str().to_owned(), c.start_block))
            .collect(),
        rpc_attempts: chainsync_actors::listener::rpc::MAX_ATTEMPTS,
    })
}

fn reconciler_settings(chain: &EvmChainConfig, retention: &RetentionConfig) -> ReconcilerSettings {
    let rule = match chain.confirmation {
        ConfirmationPolicy::Depth(depth) => ConfirmationRule::Depth(depth),
        ConfirmationPolicy::Finalized => ConfirmationRule::Finalized,
    };
    ReconcilerSettings {
        chain: chain.name.clone(),
        policy: ReconcilePolicy {
            rule,
            stuck_after: chain.stuck_after,
            stuck_after_blocks: chain.stuck_after_blocks,
            dropped_after: chain.dropped_after,
            head_stall_after: chain.head_stall_after,
        },
        overdue_grace: chain.overdue_grace,
        drift_check_interval: chain.drift_check_interval,
        // Often enough to flag a stuck transfer well within its threshold, never faster than
        // the head is polled.
        sweep_interval: (chain.stuck_after / 4)
            .min(Duration::from_secs(5))
            .max(chain.poll_interval.min(Duration::from_secs(1)))
            .max(Duration::from_millis(200)),
        retention: Retention {
            block_window: retention.block_window,
            reorg_window: chain.reorg_window,
            removed_events: retention.removed_events,
            delivered_outbox: retention.delivered_outbox,
        },
    }
}

/// `chainsync migrate`.
pub async fn migrate(config: &Config, url_override: Option<String>) -> anyhow::Result<()> {
    let url = url_override.unwrap_or_else(|| database_url(config));
    let pool = db::connect(&url, 2, config.database.statement_timeout, false).await?;
    let applied = db::migrate(&pool).await?;
    println!(
        "migrations: {applied} applied, {} known",
        db::MIGRATOR.iter().count()
    );
    Ok(())
}

/// Checks the node serves the configured chain and records its identity (or refuses a
/// database that belongs to another chain).
async fn check_identity(pool: &PgPool, settings: &EvmListenerSettings) -> anyhow::Result<()> {
    let rpc = EvmRpc::new(
        &settings.chain,
        settings.endpoints.clone(),
        settings.requests_per_second,
    );
    let chain_id = rpc.chain_id().await?;
    if chain_id != settings.chain_id {
        bail!(
            "chain {}: the node at {} reports chain id {chain_id}, the configuration says {}",
            settings.chain,
            rpc.current_endpoint(),
            settings.chain_id
        );
    }
    let genesis = rpc.genesis_hash().await?;
    let mut conn = pool.acquire().await?;
    store::ensure_evm_identity(&mut conn, &settings.chain, chain_id, genesis).await?;
    let contracts: Vec<(Address, String, u64, Option<B256>)> = settings
        .contracts
        .iter()
        .map(|(address, role, start)| (*address, role.clone(), *start, None))
        .collect();
    store::register_contracts(&mut conn, &settings.chain, &contracts).await?;
    Ok(())
}

/// A running chain pipeline: its arbiter and the listener's address. The address must live as
/// long as the pipeline: actix's supervisor restarts a stopped actor only while somebody still
/// holds an address to it.
struct ChainPipeline {
    arbiter: Arbiter,
    _listener: Box<dyn std::any::Any + Send>,
    /// TON: the connection holding the network's advisory lock (EVM: the store writer holds it).
    _lock: Option<sqlx::PgConnection>,
}

/// Starts one chain's pipeline on its own arbiter once this instance holds the chain's lock.
async fn start_evm_chain(
    settings: EvmListenerSettings,
    reconciler_settings: ReconcilerSettings,
    pool: PgPool,
    database_url: String,
    readiness: Readiness,
) -> anyhow::Result<ChainPipeline> {
    let chain = settings.chain.clone();
    let max_silence = (settings.poll_interval * 10).max(Duration::from_secs(120));
    readiness.set(&chain, ChainState::Starting, max_silence);
    check_identity(&pool, &settings).await?;
    readiness.set(&chain, ChainState::Standby, max_silence);
    let conn = writer::connect_and_lock(&database_url, &chain).await?;
    let roles: HashMap<Address, String> = settings
        .contracts
        .iter()
        .map(|(address, role, _)| (*address, role.clone()))
        .collect();
    // Each chain gets its own arbiter (thread): a slow chain never stalls another.
    let arbiter = Arbiter::new();
    let handle = arbiter.handle();
    let writer_chain = chain.clone();
    let rule = reconciler_settings.policy.rule;
    let writer = StoreWriter::start_in_arbiter(&handle, move |_| {
        StoreWriter::new(writer_chain, database_url, conn, roles, rule)
    });
    let rpc = Arc::new(EvmRpc::new(
        &chain,
        settings.endpoints.clone(),
        settings.requests_per_second,
    ));
    let reconciler_pool = pool.clone();
    let reconciler = Reconciler::start_in_arbiter(&handle, move |_| {
        Reconciler::new(
            reconciler_settings,
            writer.recipient(),
            rpc,
            reconciler_pool,
            Arc::new(SystemClock),
        )
    });
    let sink = reconciler.recipient();
    let listener =
        Supervisor::start_in_arbiter(&handle, move |_| EvmListener::new(settings, pool, sink));
    readiness.set(&chain, ChainState::Active, max_silence);
    tracing::info!(chain = %chain, "chain pipeline started");
    Ok(ChainPipeline {
        arbiter,
        _listener: Box::new(listener),
        _lock: None,
    })
}

fn ton_account(address: &ConfigTonAddress) -> TonAccount {
    TonAccount {
        workchain: address.workchain(),
        address: *address.account_id(),
    }
}

/// The listener settings of one `[[ton]]` network.
pub fn ton_listener_settings(network: &TonNetworkConfig) -> TonListenerSettings {
    let accounts = network
        .accounts
        .iter()
        .map(|account| match account.role {
            TonAccountRole::Deposit => WatchedAccount::Deposit {
                address: ton_account(&account.address),
                memo: account.memo.clone(),
            },
            TonAccountRole::HotWallet => WatchedAccount::HotWallet {
                address: ton_account(&account.address),
            },
            TonAccountRole::JettonDeposit => WatchedAccount::JettonOwner {
                owner: ton_account(&account.address),
                masters: account.jetton_masters.iter().map(ton_account).collect(),
            },
        })
        .collect();
    TonListenerSettings {
        chain: network.name.clone(),
        network: network.network.as_str().to_owned(),
        global_config_json: network.global_config_json.clone(),
        request_timeout: network.request_timeout,
        poll_interval: network.poll_interval,
        policy: TonPolicy {
            confirmations: network.confirmations,
            stuck_after: network.stuck_after,
        },
        accounts,
    }
}

/// Starts one TON network's listener on its own arbiter once this instance holds its lock.
async fn start_ton_network(
    settings: TonListenerSettings,
    pool: PgPool,
    database_url: String,
    readiness: Readiness,
) -> anyhow::Result<ChainPipeline> {
    let chain = settings.chain.clone();
    let max_silence = (settings.poll_interval * 10).max(Duration::from_secs(120));
    readiness.set(&chain, ChainState::Starting, max_silence);
    // The network identity is checked before anything is indexed: a mismatch stops the process.
    let client = chainsync_actors::ton::client::TonClient::new(
        &chain,
        &settings.global_config_json,
        settings.request_timeout,
    )?;
    let info = client.masterchain_info().await?;
    let mut conn = pool.acquire().await?;
    chainsync_actors::ton::store::ensure_identity(
        &mut conn,
        &chain,
        &settings.network,
        info.init.root_hash.0,
    )
    .await?;
    drop(conn);
    readiness.set(&chain, ChainState::Standby, max_silence);
    let lock = writer::connect_and_lock(&database_url, &chain).await?;
    let arbiter = Arbiter::new();
    let listener =
        Supervisor::start_in_arbiter(&arbiter.handle(), move |_| TonListener::new(settings, pool));
    readiness.set(&chain, ChainState::Active, max_silence);
    tracing::info!(chain = %chain, "TON network pipeline started");
    Ok(ChainPipeline {
        arbiter,
        _listener: Box::new(listener),
        _lock: Some(lock),
    })
}

/// `chainsync run`: until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let url = database_url(&config);
    let pool = db::connect(
        &url,
        config.database.max_connections,
        config.database.statement_timeout,
        false,
    )
    .await?;
    let applied = db::migrate(&pool).await?;
    tracing::info!(applied, "database migrations checked");
    let api_pool = db::connect(
        &url,
        config.database.api_max_connections,
        config.database.statement_timeout,
        true,
    )
    .await?;

    for chain in &config.evm {
        // Discovered producer clones report under `producer` even when none is configured.
        let mut roles: Vec<&str> = chain.contracts.iter().map(|c| c.role.as_str()).collect();
        roles.push("producer");
        roles.sort_unstable();
        roles.dedup();
        METRICS.init_evm_chain(&chain.name, &roles);
    }
    for network in &config.ton {
        METRICS.init_ton_chain(&network.name);
    }

    let readiness = Readiness::default();
    let ops = telemetry::serve_ops(config.metrics.listen, pool.clone(), readiness.clone())
        .with_context(|| format!("cannot listen on {} for /metrics", config.metrics.listen))?;
    let ops_handle = ops.handle();
    actix::spawn(ops);
    let api_server = api::serve(config.api.listen, api_pool)
        .with_context(|| format!("cannot listen on {} for the API", config.api.listen))?;
    let api_handle = api_server.handle();
    actix::spawn(api_server);
    tracing::info!(api = %format!("http://{}", config.api.listen),
        metrics = %format!("http://{}/metrics", config.metrics.listen), "serving");

    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let arbiters = std::sync::Arc::new(std::sync::Mutex::new(Vec::<ChainPipeline>::new()));
    for chain in &config.evm {
        let settings = listener_settings(chain)?;
        let reconciler = reconciler_settings(chain, &config.retention);
        let pool = pool.clone();
        let url = url.clone();
        let readiness = readiness.clone();
        let arbiters = arbiters.clone();
        let failed = failed_tx.clone();
        actix::spawn(async move {
            let name = settings.chain.clone();
            match start_evm_chain(settings, reconciler, pool, url, readiness).await {
                Ok(pipeline) => {
                    if let Ok(mut list) = arbiters.lock() {
                        list.push(pipeline);
                    }
                }
                Err(err) => {
                    let _ = failed.send(format!("chain {name}: {err:#}"));
                }
            }
        });
    }
    for network in &config.ton {
        let settings = ton_listener_settings(network);
        let pool = pool.clone();
        let url = url.clone();
        let readiness = readiness.clone();
        let arbiters = arbiters.clone();
        let failed = failed_tx.clone();
        actix::spawn(async move {
            let name = settings.chain.clone();
            match start_ton_network(settings, pool, url, readiness).await {
                Ok(pipeline) => {
                    if let Ok(mut list) = arbiters.lock() {
                        list.push(pipeline);
                    }
                }
                Err(err) => {
                    let _ = failed.send(format!("chain {name}: {err:#}"));
                }
            }
        });
    }
    drop(failed_tx);

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
        Some(reason) = failed_rx.recv() => Err(anyhow::anyhow!(reason)),
    };
    tracing::info!("shutting down");
    api_handle.stop(true).await;
    ops_handle.stop(true).await;
    if let Ok(list) = arbiters.lock() {
        for pipeline in list.iter() {
            pipeline.arbiter.stop();
        }
    }
    pool.close().await;
    outcome
}

/// `chainsync watch`: registers a transaction to follow; prints the transfer id.
pub async fn watch(
    config: &Config,
    chain: &str,
    tx_hash: &str,
    from: Option<&str>,
    nonce: Option<u64>,
    label: Option<&str>,
) -> anyhow::Result<()> {
    if config.ton.iter().any(|n| n.name == chain) {
        if from.is_some() || nonce.is_some() {
            bail!("--from and --nonce apply to EVM chains; {chain:?} is a TON network");
        }
        return watch_ton(config, chain, tx_hash, label).await;
    }
    let hash: B256 = tx_hash.parse().map_err(|_| {
        anyhow::anyhow!("tx hash {tx_hash:?}: expected 0x followed by 64 hex digits")
    })?;
    let sender: Option<Address> = from
        .map(|text| {
            text.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--from {text:?}: expected an address (0x followed by 40 hex digits)"
                )
            })
        })
        .transpose()?;
    if !config.evm.iter().any(|c| c.name == chain) {
        bail!(
            "chain {chain:?} is not configured (configured EVM chains: {})",
            config
                .evm
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let url = database_url(config);
    let pool = db::connect(&url, 2, config.database.statement_timeout, false).await?;
    db::migrate(&pool).await?;
    let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM chains WHERE name = $1)")
        .bind(chain)
        .fetch_one(&pool)
        .await?;
    if !known {
        bail!("chain {chain:?} has not been indexed yet: start `chainsync run` once so its identity is recorded");
    }
    let mut tx = pool.begin().await?;
    let (id, created) = chainsync_actors::writer::transfers::register_watched(
        &mut tx,
        chain,
        hash,
        sender,
        nonce,
        label,
        chrono::Utc::now(),
    )
    .await?;
    tx.commit().await?;
    if created {
        println!("watching {hash:#x} on {chain}: transfer {id}");
    } else {
        println!("already watching {hash:#x} on {chain}: transfer {id}");
    }
    Ok(())
}

/// `chainsync watch` on a TON network: registers an outgoing transfer by the TEP-467 normalised
/// hash of its external message, before it lands.
async fn watch_ton(
    config: &Config,
    chain: &str,
    hash_text: &str,
    label: Option<&str>,
) -> anyhow::Result<()> {
    let digits = hash_text.strip_prefix("0x").unwrap_or(hash_text);
    let hash: [u8; 32] = hex::decode(digits)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "external message hash {hash_text:?}: expected 64 hex digits (the TEP-467 normalised hash)"
            )
        })?;
    let url = database_url(config);
    let pool = db::connect(&url, 2, config.database.statement_timeout, false).await?;
    db::migrate(&pool).await?;
    let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM chains WHERE name = $1)")
        .bind(chain)
        .fetch_one(&pool)
        .await?;
    if !known {
        bail!("TON network {chain:?} has not been indexed yet: start `chainsync run` once so its identity is recorded");
    }
    let mut tx = pool.begin().await?;
    let id = chainsync_actors::ton::store::register_external(
        &mut tx,
        chain,
        hash,
        label,
        chrono::Utc::now(),
    )
    .await?;
    tx.commit().await?;
    println!(
        "watching external message {} on {chain}: transfer {id}",
        hex::encode(hash)
    );
    Ok(())
}

/// `chainsync rewind`: refuses while another process indexes the chain.
pub async fn rewind(config: &Config, chain: &str, to: u64) -> anyhow::Result<()> {
    let url = database_url(config);
    let pool = db::connect(&url, 2, config.database.statement_timeout, false).await?;
    db::migrate(&pool).await?;
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(format!("chainsync:chain:{chain}"))
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        bail!("chain {chain} is being indexed by a running chainsync; stop it before rewinding");
    }
    let known: bool = sqlx::query_scalar("SELECT exists(SELECT 1 FROM chains WHERE name = $1)")
        .bind(chain)
        .fetch_one(&mut *conn)
        .await?;
    if !known {
        bail!("chain {chain} is not in this database");
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let removed = store::rewind_chain(&mut tx, chain, to).await?;
    sqlx::query("UPDATE chain_status SET halted_reason = NULL WHERE chain = $1")
        .bind(chain)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    println!("chain {chain}: rewound to block {to}; {removed} logs above it marked removed and will be derived again");
    Ok(())
}

/// One log identity: (block hash, tx hash, log index).
type LogKey = (Vec<u8>, Vec<u8>, i64);

/// `chainsync verify`: stored non-removed logs versus the node's `eth_getLogs`.
pub async fn verify(config: &Config, chain: &str, from: u64, to: u64) -> anyhow::Result<bool> {
    let chain_config = config
        .evm
        .iter()
        .find(|c| c.name == chain)
        .with_context(|| format!("chain {chain} is not in the configuration"))?;
    let settings = listener_settings(chain_config)?;
    let url = database_url(config);
    let pool = db::connect(&url, 2, config.database.statement_timeout, true).await?;
    let rows = sqlx::query("SELECT address, start_block FROM contract_cursors WHERE chain = $1")
        .bind(chain)
        .fetch_all(&pool)
        .await?;
    let contracts: Vec<(Address, u64)> = rows
        .iter()
        .map(|r| {
            let address: Vec<u8> = r.get("address");
            let start: i64 = r.get("start_block");
            (
                Address::from_slice(&address),
                u64::try_from(start).unwrap_or(0),
            )
        })
        .collect();
    if contracts.is_empty() {
        bail!("chain {chain} has no contracts in this database; nothing to verify");
    }
    let rpc = EvmRpc::new(
        chain,
        settings.endpoints.clone(),
        settings.requests_per_second,
    );
    let starts: HashMap<Address, u64> = contracts.iter().copied().collect();
    let addresses: Vec<Address> = contracts.iter().map(|c| c.0).collect();
    let mut node: BTreeSet<LogKey> = BTreeSet::new();
    let mut span = settings.max_block_range.max(1);
    let mut start = from;
    while start <= to {
        let end = to.min(start + span - 1);
        let filter = Filter::new()
            .address(addresses.clone())
            .from_block(start)
            .to_block(end);
        match rpc.logs(&filter).await? {
            LogsAnswer::Logs(logs) => {
                for log in logs.into_iter().filter(|l| !l.removed) {
                    let number = log.block_number.unwrap_or(0);
                    if starts.get(&log.inner.address).is_some_and(|s| number < *s) {
                        continue;
                    }
                    let key = (
                        log.block_hash.unwrap_or_default().to_vec(),
                        log.transaction_hash.unwrap_or_default().to_vec(),
                        i64::try_from(log.log_index.unwrap_or(0)).unwrap_or(i64::MAX),
                    );
                    node.insert(key);
                }
                start = end + 1;
            }
            LogsAnswer::RangeRefused(_) => span = (span / 2).max(1),
        }
    }
    let stored_rows = sqlx::query(
        "SELECT block_hash, tx_hash, log_index::bigint AS log_index FROM evm_logs
         WHERE chain = $1 AND NOT removed AND block_number BETWEEN $2 AND $3",
    )
    .bind(chain)
    .bind(i64::try_from(from).unwrap_or(i64::MAX))
    .bind(i64::try_from(to).unwrap_or(i64::MAX))
    .fetch_all(&pool)
    .await?;
    // Duplicates are counted separately below: the set only answers "is it there".
    let mut stored: BTreeSet<LogKey> = BTreeSet::new();
    for row in &stored_rows {
        let key = (
            row.get("block_hash"),
            row.get("tx_hash"),
            row.get("log_index"),
        );
        stored.insert(key);
    }
    // The same (tx, log index) stored twice under different blocks is a duplicate event.
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT tx_hash, log_index FROM evm_logs
           WHERE chain = $1 AND NOT removed AND block_number BETWEEN $2 AND $3
           GROUP BY tx_hash, log_index HAVING count(*) > 1) d",
    )
    .bind(chain)
    .bind(i64::try_from(from).unwrap_or(i64::MAX))
    .bind(i64::try_from(to).unwrap_or(i64::MAX))
    .fetch_one(&pool)
    .await?;
    let missing: Vec<&LogKey> = node.iter().filter(|k| !stored.contains(*k)).collect();
    let extra: Vec<&LogKey> = stored.iter().filter(|k| !node.contains(*k)).collect();
    println!(
        "chain {chain} blocks {from}..={to}: node {} logs, stored {} logs; missing {}, extra {}, duplicate {}",
        node.len(),
        stored_rows.len(),
        missing.len(),
        extra.len(),
        duplicates
    );
    for (label, keys) in [("missing", &missing), ("extra", &extra)] {
        for (block, tx, index) in keys.iter().take(20) {
            println!(
                "  {label}: block 0x{} tx 0x{} log {index}",
                hex::encode(block),
                hex::encode(tx)
            );
        }
    }
    Ok(missing.is_empty() && extra.is_empty() && duplicates == 0)
}
