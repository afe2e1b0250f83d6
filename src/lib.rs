//! chainsync — indexes EVM stream contracts and TON accounts into PostgreSQL.
//!
//! # Layout
//!
//! This crate is the composition root; everything that runs inside the actor system lives in
//! [`chainsync_actors`].
//!
//! - [`cli`]: the command-line interface (`run`, `migrate`, `check-config`, `devnet`, ...).
//! - [`config`]: loads the TOML file and the environment, validates once, never panics.
//! - [`redact`]: keeps secrets (RPC keys in URLs) out of logs, errors and metrics.
//! - [`db`]: connection pools and migrations.
//! - [`app`]: wires pools, migrations and the actors together and handles graceful shutdown.
//! - [`api`]: the HTTP API for backends, over a read-only pool.
//! - [`telemetry`]: tracing set-up and the `/metrics`, `/healthz`, `/readyz` listener.
//! - [`devnet`]: the local devnet: test contract deployment and the traffic generator.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod devnet;
pub mod redact;
pub mod telemetry;
