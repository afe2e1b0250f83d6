//! The local devnet: the test contracts, their deployment, and a traffic generator.
//!
//! The contracts live in `devnet/contracts` (Solidity, compiled by `node devnet/compile.js` into
//! the committed `devnet/artifacts`). They emit exactly the events of the production stream
//! contracts, quirks included, so that everything chainsync indexes can be produced locally.
//!
//! - [`deploy`] deploys them in a fixed order (same addresses on every fresh anvil) and funds
//!   anvil's dev accounts; it returns a [`Deployment`].
//! - [`Traffic`] drives a deployment with a seeded, weighted mix of operations;
//!   [`generate_events`] floods it until a number of logs exist.
//! - [`DevnetCommand`] / [`run`] are the `chainsync devnet` subcommands.
//! - [`bindings`] are the generated contract bindings (deploy, call, decode).
//! - [`ton_liteserver`] is a loopback TON liteserver serving recorded transactions.

pub mod accounts;
pub mod bindings;
mod deploy;
mod error;
mod sender;
pub mod ton_liteserver;
mod traffic;

use std::path::PathBuf;

use anyhow::Context as _;

pub use deploy::{
    deploy, Deployment, MAX_STREAM_DURATION_SECS, MIN_STREAM_AMOUNT, MIN_STREAM_DURATION_SECS,
};
pub use error::{Error, Result};
pub use traffic::{generate_events, Operation, StepReport, Traffic, TrafficTotals, TxOutcome};

/// The RPC endpoint of `anvil` started with its defaults.
pub const DEFAULT_RPC_URL: &str = "http://127.0.0.1:8545";

/// Where the traffic commands send transactions: the devnet, a deployment on it, and a seed.
#[derive(Debug, Clone, clap::Args)]
pub struct TrafficTarget {
    /// JSON-RPC endpoint of the devnet (http or ws).
    #[arg(long, default_value = DEFAULT_RPC_URL)]
    pub rpc_url: String,
    /// Deployment JSON written by `chainsync devnet deploy --out`.
    #[arg(long)]
    pub deployment: PathBuf,
    /// Seed of the operation mix; the same seed on a fresh devnet replays the same traffic.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// `chainsync devnet ...`: deploy the test contracts and drive them.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DevnetCommand {
    /// Deploy the test contracts to a fresh devnet and fund the dev accounts.
    ///
    /// Prints the deployment as JSON (or writes it to --out).
    Deploy {
        /// JSON-RPC endpoint of the devnet (http or ws).
        #[arg(long, default_value = DEFAULT_RPC_URL)]
        rpc_url: String,
        /// Write the deployment JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Drive a deployment with a realistic, seeded mix of transactions until Ctrl-C.
    Traffic {
        /// The devnet, deployment and seed.
        #[command(flatten)]
        target: TrafficTarget,
        /// Steps (each one to a few transactions) per second.
        #[arg(long, default_value_t = 2.0)]
        rate: f64,
        /// Stop after this many steps.
        #[arg(long)]
        max_steps: Option<u64>,
    },
    /// Flood a deployment until at least --events logs were emitted by the stream contracts.
    Generate {
        /// The devnet, deployment and seed.
        #[command(flatten)]
        target: TrafficTarget,
        /// Minimum number of logs to produce.
        #[arg(long, default_value_t = 10_000)]
        events: usize,
    },
    /// Serve the recorded TON transactions of tests/fixtures/ton over the liteserver protocol.
    ///
    /// The masterchain advances one block per --block-interval; scenario steps are released
    /// --steps-per-block at a time from block 2 on (the mainnet chain at block 1).
    TonLiteserver {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:46000")]
        listen: std::net::SocketAddr,
        /// The fixtures folder.
        #[arg(long, default_value = "tests/fixtures/ton")]
        fixtures: PathBuf,
        /// Time between two masterchain blocks.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        block_interval: std::time::Duration,
        /// Scenario steps released per masterchain block.
        #[arg(long, default_value_t = 1)]
        steps_per_block: usize,
        /// Unix time in milliseconds of masterchain block 1 (default: now); servers started
        /// with the same value serve the same chain.
        #[arg(long)]
        genesis_unix_ms: Option<u64>,
        /// Answer every request with "not ready", like a liteserver that is out of sync.
        #[arg(long)]
        not_ready: bool,
        /// Never serve this account's transactions (repeatable).
        #[arg(long)]
        withhold: Vec<String>,
        /// Extra scenario files to serve after the sandbox ones (repeatable).
        #[arg(long)]
        scenario: Vec<PathBuf>,
        /// Serve only this sandbox scenario (file stem, e.g. `outgoing`; repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// Answer "lt not in db" below this lt, like a liteserver without archival history.
        #[arg(long)]
        prune_below_lt: Option<u64>,
        /// Leave the second transaction out of every transaction list, like a faulty liteserver
        /// whose lists no longer follow the prev-transaction links.
        #[arg(long)]
        broken_lists: bool,
    },
}

/// Runs a `chainsync devnet` subcommand.
pub async fn run(command: DevnetCommand) -> anyhow::Result<()> {
    match command {
        DevnetCommand::Deploy { rpc_url, out } => {
            let deployment = deploy(&rpc_url)
                .await
                .context("deploying the devnet contracts")?;
            match out {
                Some(path) => {
                    deployment.save(&path)?;
                    println!("deployment written to {}", path.display());
                }
                None => println!("{}", serde_json::to_string_pretty(&deployment)?),
            }
        }
        DevnetCommand::Traffic {
            target:
                TrafficTarget {
                    rpc_url,
                    deployment,
                    seed,
                },
            rate,
            max_steps,
        } => {
            let deployment = Deployment::load(&deployment)?;
            println!("devnet traffic: seed {seed}, {rate} steps/s");
            let mut traffic = Traffic::new(&rpc_url, deployment, seed).await?;
            let stop = async {
                // If the signal handler cannot be installed, run until max_steps (or forever).
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let steps = traffic.run_steps(rate, max_steps, stop).await?;
            let totals = traffic.totals();
            println!(
                "devnet traffic stopped after {steps} steps: {} transactions ({} reverted, {} unexpectedly), {} contract logs",
                totals.transactions, totals.reverted, totals.unexpected_reverts, totals.contract_logs
            );
        }
        DevnetCommand::Generate {
            target:
                TrafficTarget {
                    rpc_url,
                    deployment,
                    seed,
                },
            events,
        } => {
            let deployment = Deployment::load(&deployment)?;
            println!("devnet event generation: seed {seed}, at least {events} logs");
            let started = std::time::Instant::now();
            let produced = generate_events(&rpc_url, deployment, seed, events).await?;
            println!(
                "generated {produced} contract logs in {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
        DevnetCommand::TonLiteserver {
            listen,
            fixtures,
            block_interval,
            steps_per_block,
            genesis_unix_ms,
            not_ready,
            withhold,
            scenario,
            only,
            prune_below_lt,
            broken_lists,
        } => {
            ton_liteserver::serve(ton_liteserver::ServeOptions {
                listen,
                fixtures,
                block_interval,
                steps_per_block,
                genesis_unix_ms,
                not_ready,
                withhold,
                extra_scenarios: scenario,
                only,
                prune_below_lt,
                broken_lists,
            })
            .await?;
        }
    }
    Ok(())
}
