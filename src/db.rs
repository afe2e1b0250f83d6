//! Connection pools and migrations.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::redact::redact_url;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Errors of the database layer; messages never carry the unredacted URL.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL does not parse as a PostgreSQL URL.
    #[error("database url {url} is invalid: {message}")]
    BadUrl {
        /// Redacted URL.
        url: String,
        /// Parser message.
        message: String,
    },
    /// Connecting failed.
    #[error("cannot connect to database {url}: {source}")]
    Connect {
        /// Redacted URL.
        url: String,
        /// Driver error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Opens a pool of at most `max_connections` with a statement timeout on every connection;
/// with `read_only`, every transaction of the pool is read-only (the API's pool).
pub async fn connect(
    url: &str,
    max_connections: u32,
    statement_timeout: Duration,
    read_only: bool,
) -> Result<PgPool, DbError> {
    let options: PgConnectOptions = url.parse().map_err(|err: sqlx::Error| DbError::BadUrl {
        url: redact_url(url),
        message: crate::redact::redact_urls_in_text(&err.to_string()),
    })?;
    let timeout_ms = statement_timeout.as_millis().to_string();
    let read_only = if read_only { "on" } else { "off" };
    let options = options
        .options([
            ("statement_timeout", timeout_ms.as_str()),
            ("default_transaction_read_only", read_only),
        ])
        .disable_statement_logging();
    // One direct connection first: a wrong host or password fails at once with the server's
    // own reason, instead of after the pool's acquire timeout.
    let probe = options.connect().await.map_err(|source| DbError::Connect {
        url: redact_url(url),
        source,
    })?;
    let _ = sqlx::Connection::close(probe).await;
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .map_err(|source| DbError::Connect {
            url: redact_url(url),
            source,
        })
}

/// Applies pending migrations; applying them again is a no-op.
pub async fn migrate(pool: &PgPool) -> Result<usize, DbError> {
    let before: i64 = applied_count(pool).await;
    MIGRATOR.run(pool).await?;
    let after: i64 = applied_count(pool).await;
    Ok(usize::try_from(after - before).unwrap_or(0))
}

async fn applied_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}
