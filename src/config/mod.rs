//! Configuration: a TOML file plus the environment, validated once and then trusted.
//!
//! Loading runs in fixed steps, each with errors that name the key they are about:
//!
//! 1. parse the TOML text ([`ConfigError::Syntax`]);
//! 2. replace `${VAR}` references in string values from the environment
//!    ([`ConfigError::MissingEnv`] when a variable is unset);
//! 3. apply the overriding variables (`DATABASE_URL`, `CHAINSYNC_API_LISTEN`, ...; see
//!    the Configuration section of `README.md`), so their values go through the same checks as the file's;
//! 4. deserialise into the raw schema, which rejects unknown keys ([`ConfigError::UnknownKey`]) and
//!    values of the wrong type;
//! 5. validate every value and apply defaults, producing the types below: durations are
//!    [`Duration`]s, addresses are parsed, URLs are [`SecretUrl`]s whose `Debug` and `Display`
//!    are redacted.
//!
//! Nothing here panics, whatever the input: every failure is a [`ConfigError`].

mod environment;
mod error;
mod evm;
mod keys;
mod raw;
mod ton;
mod ton_address;
mod validate;

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

pub use error::{ConfigError, Result};
pub use evm::{ConfirmationPolicy, ContractConfig, ContractRole, EvmChainConfig};
pub use ton::{Liteserver, TonAccountConfig, TonAccountRole, TonNetwork, TonNetworkConfig};
pub use ton_address::{TonAddress, TonAddressError};

use self::environment::{env_name_part, is_variable_name};
use self::keys::{element_key, index, join, show, EntryNames};
use self::raw::{RawConfig, RawDatabase, RawLog, RawLogFormat, RawRetention, RawWebhooks};
use self::validate::Checker;
use crate::redact::{redact_urls_in_text, Redacted, SecretUrl};

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/chainsync";
const DEFAULT_MAX_CONNECTIONS: u32 = 10;
const DEFAULT_API_MAX_CONNECTIONS: u32 = 4;
/// Upper bound of both pool sizes; PostgreSQL's own default `max_connections` is 100.
const MAX_CONNECTIONS_LIMIT: u32 = 1_000;
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_API_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9100));
const DEFAULT_LOG_LEVEL: &str = "info";
const DEFAULT_BLOCK_WINDOW_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const DEFAULT_REMOVED_EVENTS_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);
const DEFAULT_DELIVERED_OUTBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const DEFAULT_WEBHOOK_MAX_ATTEMPTS: u32 = 12;
const WEBHOOK_MAX_ATTEMPTS_LIMIT: u32 = 100;
/// Largest configuration file read.
const CONFIG_FILE_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[database]`: PostgreSQL.
    pub database: DatabaseConfig,
    /// `[api]`: the HTTP API.
    pub api: ApiConfig,
    /// `[metrics]`: the `/metrics`, `/healthz`, `/readyz` listener.
    pub metrics: MetricsConfig,
    /// `[log]`: tracing output.
    pub log: LogConfig,
    /// `[retention]`: how long housekeeping keeps rows.
    pub retention: RetentionConfig,
    /// `[[evm]]`: EVM chains, in file order.
    pub evm: Vec<EvmChainConfig>,
    /// `[[ton]]`: TON networks, in file order.
    pub ton: Vec<TonNetworkConfig>,
    /// `[webhooks]`: outbox delivery.
    pub webhooks: WebhooksConfig,
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `postgres://` URL (may carry a password, hence secret).
    pub url: SecretUrl,
    /// Size of the writer pool.
    pub max_connections: u32,
    /// Size of the read-only pool the HTTP API uses.
    pub api_max_connections: u32,
    /// PostgreSQL `statement_timeout` of every connection; zero disables it.
    pub statement_timeout: Duration,
}

/// `[api]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiConfig {
    /// Address the HTTP API binds to.
    pub listen: SocketAddr,
}

/// `[metrics]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Address the metrics and health listener binds to.
    pub listen: SocketAddr,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive, already checked to parse.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[retention]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Recent-block rows older than this (and outside the reorg window) are pruned.
    pub block_window: Duration,
    /// Events marked removed by a reorg are kept this long.
    pub removed_events: Duration,
    /// Delivered outbox rows are kept this long.
    pub delivered_outbox: Duration,
}

/// `[webhooks]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhooksConfig {
    /// Where events are delivered.
    pub endpoints: Vec<WebhookEndpoint>,
    /// Delivery attempts per event before it is given up.
    pub max_attempts: u32,
}

/// One webhook endpoint. Its `Debug` output shows neither the secret nor the URL's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// `http(s)://` URL events are POSTed to.
    pub url: SecretUrl,
    /// The environment variable the signing secret was read from.
    pub secret_env: String,
    /// The HMAC-SHA256 signing secret.
    pub secret: Redacted<String>,
}

impl Config {
    /// Loads and validates the file at `path`, taking `${VAR}` references and overrides from the
    /// process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = read_config_file(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, &|name: &str| std::env::var(name).ok())
    }

    /// Validates a configuration given as TOML text, with `env` standing in for the environment
    /// (`env(name)` returns the variable's value, or `None` when it is unset).
    ///
    /// Relative `liteservers` paths are read from the working directory.
    pub fn from_toml_str<F>(text: &str, env: &F) -> Result<Self>
    where
        F: Fn(&str) -> Option<String> + ?Sized,
    {
        let env = |name: &str| env(name);
        let mut document: toml::Table = text
            .parse()
            .map_err(|error: toml::de::Error| syntax_error(text, &error))?;
        let names = EntryNames::of(&document);
        environment::expand_variables(&mut document, &env, &names)?;
        let overridden = environment::apply_overrides(&mut document, &env);
        let names = EntryNames::of(&document);
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(document))
            .map_err(|error| schema_error(&error, &names))?;
        let checker = Checker::new(&overridden);
        validate_config(raw, &env, &checker)
    }

    /// A one-line summary, e.g.
    /// `ok: 1 EVM chain (devnet: 2 contracts), 1 TON network (ton-devnet: 3 accounts)`.
    pub fn summary(&self) -> String {
        let chains: Vec<String> = self
            .evm
            .iter()
            .map(|chain| {
                format!(
                    "{}: {}",
                    chain.name,
                    plural(chain.contracts.len(), "contract")
                )
            })
            .collect();
        let networks: Vec<String> = self
            .ton
            .iter()
            .map(|network| {
                format!(
                    "{}: {}",
                    network.name,
                    plural(network.accounts.len(), "account")
                )
            })
            .collect();
        let with_details = |count: String, details: Vec<String>| {
            if details.is_empty() {
                count
            } else {
                format!("{count} ({})", details.join(", "))
            }
        };
        format!(
            "ok: {}, {}",
            with_details(plural(self.evm.len(), "EVM chain"), chains),
            with_details(plural(self.ton.len(), "TON network"), networks)
        )
    }
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Reads a configuration file, refusing what cannot be one (a directory, a device, a huge file).
fn read_config_file(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    file.take(CONFIG_FILE_MAX_BYTES + 1)
        .read_to_string(&mut text)?;
    if u64::try_from(text.len()).map_or(true, |len| len > CONFIG_FILE_MAX_BYTES) {
        return Err(std::io::Error::other(format!(
            "larger than {CONFIG_FILE_MAX_BYTES} bytes"
        )));
    }
    Ok(text)
}

/// A TOML syntax error with its position. The parser's own rendering quotes the offending line,
/// which may hold a secret, so only the position and the message are kept.
fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let offset = error.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before
        .get(line_start..)
        .map_or(1, |current| current.chars().count() + 1);
    let message = redact_urls_in_text(error.message().trim()).replace('\n', "; ");
    ConfigError::Syntax {
        line,
        column,
        message,
    }
}

/// Turns a deserialisation error into the variant that says best what is wrong.
fn schema_error(
    error: &serde_path_to_error::Error<toml::de::Error>,
    names: &EntryNames,
) -> ConfigError {
    let key = names.render(error.path());
    let message = error.inner().message();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // serde words it "unknown field `x`, expected one of `a`, `b`" (or "expected `a`", or
        // "there are no fields"); the key is already in the path, the list of allowed keys is kept.
        let expected = rest
            .split_once("`, expected ")
            .map_or("no key at this place", |(_, expected)| expected);
        return ConfigError::UnknownKey {
            key,
            expected: expected.to_owned(),
        };
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return ConfigError::MissingKey {
            key: join(&key, field),
        };
    }
    ConfigError::WrongType {
        key,
        message: redact_urls_in_text(message),
    }
}

fn validate_config(
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
    checker: &Checker<'_>,
) -> Result<Config> {
    let database = validate_database(raw.database, checker)?;
    let api = ApiConfig {
        listen: checker.socket_addr("api.listen", raw.api.listen.as_deref(), DEFAULT_API_LISTEN)?,
    };
    let metrics = MetricsConfig {
        listen: checker.socket_addr(
            "metrics.listen",
            raw.metrics.listen.as_deref(),
            DEFAULT_METRICS_LISTEN,
        )?,
    };
    if api.listen == metrics.listen && api.listen.port() != 0 {
        return Err(checker.invalid(
            "metrics.listen",
            show(&metrics.listen.to_string()),
            "an address different from api.listen (both listeners bind at start-up)",
        ));
    }
    let log = validate_log(raw.log, checker)?;
    let retention = validate_retention(raw.retention, checker)?;

    let evm = raw
        .evm
        .into_iter()
        .enumerate()
        .map(|(position, chain)| {
            let key = element_key("evm", position, Some(&chain.name));
            evm::validate_chain(chain, &key, checker)
        })
        .collect::<Result<Vec<_>>>()?;
    let ton = raw
        .ton
        .into_iter()
        .enumerate()
        .map(|(position, network)| {
            let key = element_key("ton", position, Some(&network.name));
            ton::validate_network(network, &key, checker)
        })
        .collect::<Result<Vec<_>>>()?;
    check_unique_names(&evm, &ton, checker)?;
    check_unique_chain_ids(&evm, checker)?;

    let webhooks = validate_webhooks(raw.webhooks, env, checker)?;
    Ok(Config {
        database,
        api,
        metrics,
        log,
        retention,
        evm,
        ton,
        webhooks,
    })
}

fn validate_database(raw: RawDatabase, checker: &Checker<'_>) -> Result<DatabaseConfig> {
    let url = checker.url(
        "database.url",
        raw.url.as_deref().unwrap_or(DEFAULT_DATABASE_URL),
        &["postgres", "postgresql"],
    )?;
    let pool_size = |key: &str, written: Option<i64>, default: u32| {
        checker.integer_u32(key, written, default, 1..=MAX_CONNECTIONS_LIMIT)
    };
    Ok(DatabaseConfig {
        url,
        max_connections: pool_size(
            "database.max_connections",
            raw.max_connections,
            DEFAULT_MAX_CONNECTIONS,
        )?,
        api_max_connections: pool_size(
            "database.api_max_connections",
            raw.api_max_connections,
            DEFAULT_API_MAX_CONNECTIONS,
        )?,
        statement_timeout: checker.duration(
            "database.statement_timeout",
            raw.statement_timeout.as_deref(),
            DEFAULT_STATEMENT_TIMEOUT,
            true,
        )?,
    })
}

fn validate_log(raw: RawLog, checker: &Checker<'_>) -> Result<LogConfig> {
    let level = raw.level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
    if let Err(reason) = tracing_subscriber::EnvFilter::try_new(&level) {
        return Err(checker.invalid(
            "log.level",
            show(&level),
            format!("a tracing filter directive such as \"info\" or \"chainsync=debug,sqlx=warn\" ({reason})"),
        ));
    }
    let format = match raw.format {
        None | Some(RawLogFormat::Text) => LogFormat::Text,
        Some(RawLogFormat::Json) => LogFormat::Json,
    };
    Ok(LogConfig { level, format })
}

fn validate_retention(raw: RawRetention, checker: &Checker<'_>) -> Result<RetentionConfig> {
    let duration =
        |key: &str, written: Option<&str>, default| checker.duration(key, written, default, false);
    Ok(RetentionConfig {
        block_window: duration(
            "retention.block_window",
            raw.block_window.as_deref(),
            DEFAULT_BLOCK_WINDOW_RETENTION,
        )?,
        removed_events: duration(
            "retention.removed_events",
            raw.removed_events.as_deref(),
            DEFAULT_REMOVED_EVENTS_RETENTION,
        )?,
        delivered_outbox: duration(
            "retention.delivered_outbox",
            raw.delivered_outbox.as_deref(),
            DEFAULT_DELIVERED_OUTBOX_RETENTION,
        )?,
    })
}

fn validate_webhooks(
    raw: RawWebhooks,
    env: &dyn Fn(&str) -> Option<String>,
    checker: &Checker<'_>,
) -> Result<WebhooksConfig> {
    let mut endpoints = Vec::with_capacity(raw.endpoints.len());
    for (position, endpoint) in raw.endpoints.into_iter().enumerate() {
        let key = index("webhooks.endpoints", position);
        let url = checker.url(&join(&key, "url"), &endpoint.url, &["http", "https"])?;
        let secret_key = join(&key, "secret_env");
        if !is_variable_name(&endpoint.secret_env) {
            return Err(checker.invalid(
                &secret_key,
                show(&endpoint.secret_env),
                "the name of the environment variable holding the signing secret ([A-Za-z_][A-Za-z0-9_]*)",
            ));
        }
        let Some(secret) = env(&endpoint.secret_env) else {
            return Err(ConfigError::MissingEnv {
                key: secret_key,
                variable: endpoint.secret_env,
            });
        };
        if secret.is_empty() {
            return Err(checker.invalid(
                &secret_key,
                format!("{} set to an empty string", endpoint.secret_env),
                "a non-empty signing secret in that variable",
            ));
        }
        endpoints.push(WebhookEndpoint {
            url,
            secret_env: endpoint.secret_env,
            secret: Redacted::new(secret),
        });
    }
    Ok(WebhooksConfig {
        endpoints,
        max_attempts: checker.integer_u32(
            "webhooks.max_attempts",
            raw.max_attempts,
            DEFAULT_WEBHOOK_MAX_ATTEMPTS,
            1..=WEBHOOK_MAX_ATTEMPTS_LIMIT,
        )?,
    })
}

/// Names label metrics and rows, so they must be unique across EVM chains and TON networks; EVM
/// names must also stay distinct once turned into environment variable names.
fn check_unique_names(
    evm: &[EvmChainConfig],
    ton: &[TonNetworkConfig],
    checker: &Checker<'_>,
) -> Result<()> {
    let entries = evm
        .iter()
        .map(|chain| ("evm", chain.name.as_str()))
        .chain(ton.iter().map(|network| ("ton", network.name.as_str())));
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (section, name) in entries {
        let key = join(&format!("{section}[{name}]"), "name");
        if let Some((other_section, _)) = seen.iter().find(|(_, other)| *other == name) {
            return Err(checker.invalid(
                &key,
                show(name),
                format!("a name not used by another chain ({other_section}[{name}] has it)"),
            ));
        }
        if section == "evm" {
            let env_part = env_name_part(name);
            let clash = seen.iter().find(|(other_section, other)| {
                *other_section == "evm" && env_name_part(other) == env_part
            });
            if let Some((_, other)) = clash {
                return Err(checker.invalid(
                    &key,
                    show(name),
                    format!(
                        "a name that differs from evm[{other}] in environment variables too (both are CHAINSYNC_EVM_{env_part}_*)"
                    ),
                ));
            }
        }
        seen.push((section, name));
    }
    Ok(())
}

fn check_unique_chain_ids(evm: &[EvmChainConfig], checker: &Checker<'_>) -> Result<()> {
    for (position, chain) in evm.iter().enumerate() {
        if let Some(other) = evm[..position]
            .iter()
            .find(|other| other.chain_id == chain.chain_id)
        {
            return Err(checker.invalid(
                &format!("evm[{}].chain_id", chain.name),
                chain.chain_id.to_string(),
                format!(
                    "a chain_id not used by another [[evm]] entry (evm[{}] has it)",
                    other.name
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        let config = Config::from_toml_str("", &no_env).expect("defaults are valid");
        assert_eq!(config.database.url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(config.api.listen, DEFAULT_API_LISTEN);
        assert_eq!(config.log.format, LogFormat::Text);
        assert_eq!(config.webhooks.max_attempts, 12);
        assert_eq!(config.summary(), "ok: 0 EVM chains, 0 TON networks");
    }

    #[test]
    fn syntax_errors_give_a_position_and_never_quote_the_line() {
        let text = "[database]\nurl = \"postgres://u:SECRET@h/db\" junk\n";
        let error = Config::from_toml_str(text, &no_env).expect_err("should be rejected");
        let ConfigError::Syntax { line, .. } = &error else {
            panic!("expected a syntax error, got {error}")
        };
        assert_eq!(*line, 2);
        assert!(!error.to_string().contains("SECRET"), "{error}");
    }

    #[test]
    fn schema_errors_name_the_key() {
        let cases = [
            ("[log]\nlevel = 3", "log.level: invalid type"),
            (
                "[log]\nformat = \"xml\"",
                "log.format: unknown variant `xml`",
            ),
            ("nope = 1", "nope: unknown key, expected one of `database`"),
            (
                "[[evm]]\nname = \"a\"",
                "evm[a].chain_id: required key is missing",
            ),
            (
                "[[evm]]\nchain_id = 1",
                "evm[0].name: required key is missing",
            ),
        ];
        for (text, expected) in cases {
            let error = Config::from_toml_str(text, &no_env)
                .expect_err("should be rejected")
                .to_string();
            assert!(error.starts_with(expected), "{text:?} gave {error:?}");
        }
    }
}
