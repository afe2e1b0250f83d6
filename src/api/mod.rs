//! The HTTP API for backends. It reads Postgres through its own read-only pool, never through
//! actor mailboxes, so a busy indexer does not slow queries down and queries cannot block it.

use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Serialize;
use sqlx::{PgPool, Row};

/// One row of `GET /v1/chains`.
#[derive(Debug, Serialize)]
pub struct ChainStatusView {
    /// Chain name from the configuration.
    pub chain: String,
    /// `evm` or `ton`.
    pub kind: String,
    /// Latest block the node reported.
    pub head_block: Option<i64>,
    /// Highest block whose events are committed (lowest contract cursor).
    pub indexed_block: Option<i64>,
    /// Highest block past the confirmation threshold.
    pub confirmed_block: Option<i64>,
    /// Whether the chain head has stopped moving.
    pub stalled: bool,
    /// Why indexing halted, when it did.
    pub halted_reason: Option<String>,
    /// Depth of the last reorg.
    pub last_reorg_depth: Option<i64>,
    /// When the last reorg was detected (RFC 3339).
    pub last_reorg_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct ApiError {
    error: String,
}

async fn chains(pool: web::Data<PgPool>) -> HttpResponse {
    let rows = sqlx::query(
        "SELECT c.name, c.kind, s.head_block, s.indexed_block, s.confirmed_block,
                coalesce(s.stalled, false) AS stalled, s.halted_reason, s.last_reorg_depth,
                to_char(s.last_reorg_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_reorg_at
         FROM chains c LEFT JOIN chain_status s ON s.chain = c.name ORDER BY c.name",
    )
    .fetch_all(pool.get_ref())
    .await;
    match rows {
        Ok(rows) => HttpResponse::Ok().json(
            rows.iter()
                .map(|row| ChainStatusView {
                    chain: row.get("name"),
                    kind: row.get("kind"),
                    head_block: row.get("head_block"),
                    indexed_block: row.get("indexed_block"),
                    confirmed_block: row.get("confirmed_block"),
                    stalled: row.get("stalled"),
                    halted_reason: row.get("halted_reason"),
                    last_reorg_depth: row.get("last_reorg_depth"),
                    last_reorg_at: row.get("last_reorg_at"),
                })
                .collect::<Vec<_>>(),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "GET /v1/chains failed");
            HttpResponse::ServiceUnavailable().json(ApiError {
                error: "database unavailable".to_owned(),
            })
        }
    }
}

/// Starts the API listener on `listen`, reading through `pool`.
pub fn serve(
    listen: std::net::SocketAddr,
    pool: PgPool,
) -> std::io::Result<actix_web::dev::Server> {
    let pool = web::Data::new(pool);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(pool.clone())
            .route("/v1/chains", web::get().to(chains))
    })
    .workers(2)
    .disable_signals()
    .bind(listen)?
    .run())
}
