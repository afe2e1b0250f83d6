//! Tracing set-up and the operations listener: `/metrics`, `/healthz`, `/readyz`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpResponse, HttpServer};
use chainsync_actors::metrics::{render, METRICS};
use sqlx::PgPool;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global tracing subscriber. `CHAINSYNC_LOG` / `RUST_LOG` override the level.
pub fn init_tracing(log: &LogConfig) {
    let filter = std::env::var("CHAINSYNC_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .or_else(|| EnvFilter::try_new(&log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// What a chain's pipeline is doing, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainState {
    /// Connecting, checking identity.
    Starting,
    /// Another instance holds the chain's lock: this one waits.
    Standby,
    /// Indexing; the listener loop must keep making progress.
    Active,
}

/// Shared readiness state: each chain's state and how long its listener may go without a step.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    chains: Arc<Mutex<HashMap<String, (ChainState, Duration)>>>,
}

impl Readiness {
    /// Records `chain`'s state; `max_silence` is how long its loop may go without progress.
    pub fn set(&self, chain: &str, state: ChainState, max_silence: Duration) {
        if let Ok(mut chains) = self.chains.lock() {
            chains.insert(chain.to_owned(), (state, max_silence));
        }
    }

    /// Chains whose listener is active but has not made progress in time.
    pub fn stalled_listeners(&self) -> Vec<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let Ok(chains) = self.chains.lock() else {
            return vec!["<readiness state poisoned>".to_owned()];
        };
        let mut stalled: Vec<String> = chains
            .iter()
            .filter(|(_, (state, _))| *state == ChainState::Active)
            .filter(|(chain, (_, max_silence))| {
                let last = METRICS
                    .listener_progress_timestamp_seconds
                    .with_label_values(&[chain.as_str()])
                    .get();
                now - last > max_silence.as_secs_f64()
            })
            .map(|(chain, _)| chain.clone())
            .collect();
        stalled.sort();
        stalled
    }
}

struct OpsState {
    pool: PgPool,
    readiness: Readiness,
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(render())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

async fn readyz(state: web::Data<OpsState>) -> HttpResponse {
    let db_ok = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let stalled = state.readiness.stalled_listeners();
    if db_ok && stalled.is_empty() {
        HttpResponse::Ok().body("ready\n")
    } else {
        let mut reasons = Vec::new();
        if !db_ok {
            reasons.push("database unreachable".to_owned());
        }
        for chain in stalled {
            reasons.push(format!("listener of chain {chain} is not making progress"));
        }
        HttpResponse::ServiceUnavailable().body(format!("not ready: {}\n", reasons.join("; ")))
    }
}

/// Starts the operations listener on `listen`.
pub fn serve_ops(
    listen: std::net::SocketAddr,
    pool: PgPool,
    readiness: Readiness,
) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(OpsState { pool, readiness });
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
    })
    .workers(1)
    .disable_signals()
    .bind(listen)?
    .run())
}
