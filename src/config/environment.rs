//! What the environment contributes: `${VAR}` references inside the file, and the variables that
//! override keys.
//!
//! Both act on the parsed TOML document before it is deserialised, so a value from the environment
//! goes through exactly the same checks as one written in the file.

use super::error::{ConfigError, Result};
use super::keys::{index, is_valid_name, join, show, EntryNames};

/// `DATABASE_URL` overrides `database.url`.
pub(super) const DATABASE_URL: &str = "DATABASE_URL";
/// `CHAINSYNC_API_LISTEN` overrides `api.listen`.
pub(super) const API_LISTEN: &str = "CHAINSYNC_API_LISTEN";
/// `CHAINSYNC_METRICS_LISTEN` overrides `metrics.listen`.
pub(super) const METRICS_LISTEN: &str = "CHAINSYNC_METRICS_LISTEN";
/// `CHAINSYNC_LOG` overrides `log.level` (and wins over `RUST_LOG`).
pub(super) const LOG: &str = "CHAINSYNC_LOG";
/// `RUST_LOG` overrides `log.level` when `CHAINSYNC_LOG` is not set.
pub(super) const RUST_LOG: &str = "RUST_LOG";
/// `CHAINSYNC_LOG_FORMAT` overrides `log.format`.
pub(super) const LOG_FORMAT: &str = "CHAINSYNC_LOG_FORMAT";

/// The variable overriding `evm[NAME].rpc_urls`: `CHAINSYNC_EVM_<NAME>_RPC_URLS`, comma separated.
pub(super) fn evm_rpc_urls_variable(chain_name: &str) -> String {
    format!("CHAINSYNC_EVM_{}_RPC_URLS", env_name_part(chain_name))
}

/// The variable overriding `evm[NAME].ws_url`: `CHAINSYNC_EVM_<NAME>_WS_URL`.
pub(super) fn evm_ws_url_variable(chain_name: &str) -> String {
    format!("CHAINSYNC_EVM_{}_WS_URL", env_name_part(chain_name))
}

/// A chain name as it appears in environment variable names: upper case, `-` becomes `_`.
pub(super) fn env_name_part(chain_name: &str) -> String {
    chain_name.to_ascii_uppercase().replace('-', "_")
}

/// Keys whose value came from an environment variable rather than from the file.
#[derive(Debug, Default)]
pub(super) struct Overridden(Vec<(String, String)>);

impl Overridden {
    /// The variable that set `key` (or a parent of it), if any.
    pub(super) fn variable_for(&self, key: &str) -> Option<&str> {
        self.0.iter().find_map(|(overridden_key, variable)| {
            let covers = key == overridden_key
                || key
                    .strip_prefix(overridden_key.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']));
            covers.then_some(variable.as_str())
        })
    }
}

/// Replaces every `${VAR}` in every string value of `document` with the variable's value.
///
/// `$${` stands for a literal `${`. A reference to an unset variable is an error naming the variable
/// and the key.
pub(super) fn expand_variables(
    document: &mut toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
    names: &EntryNames,
) -> Result<()> {
    for (key, value) in document.iter_mut() {
        let path = join("", key);
        if let toml::Value::Array(entries) = value {
            for (position, entry) in entries.iter_mut().enumerate() {
                let entry_key = names
                    .entry_key(key, position)
                    .unwrap_or_else(|| index(&path, position));
                expand_value(entry, &entry_key, env)?;
            }
        } else {
            expand_value(value, &path, env)?;
        }
    }
    Ok(())
}

fn expand_value(
    value: &mut toml::Value,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<()> {
    match value {
        toml::Value::String(text) => {
            if text.contains('$') {
                *text = expand_string(text, key, env)?;
            }
        }
        toml::Value::Array(items) => {
            for (position, item) in items.iter_mut().enumerate() {
                expand_value(item, &index(key, position), env)?;
            }
        }
        toml::Value::Table(table) => {
            for (child, item) in table.iter_mut() {
                expand_value(item, &join(key, child), env)?;
            }
        }
        toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Datetime(_) => {}
    }
    Ok(())
}

/// Expands the `${VAR}` references of one string.
fn expand_string(text: &str, key: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let invalid = |expected: &str| ConfigError::Invalid {
        key: key.to_owned(),
        value: show(text),
        expected: expected.to_owned(),
        from_env: None,
    };

    let mut expanded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        expanded.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        if let Some(escaped) = after.strip_prefix("$${") {
            expanded.push_str("${");
            rest = escaped;
        } else if let Some(reference) = after.strip_prefix("${") {
            let Some(close) = reference.find('}') else {
                return Err(invalid(
                    "every `${` closed by `}` (write `$${` for a literal `${`)",
                ));
            };
            let variable = &reference[..close];
            if !is_variable_name(variable) {
                return Err(invalid("`${NAME}` with NAME made of ASCII letters, digits and `_`, not starting with a digit"));
            }
            let Some(value) = env(variable) else {
                return Err(ConfigError::MissingEnv {
                    key: key.to_owned(),
                    variable: variable.to_owned(),
                });
            };
            expanded.push_str(&value);
            rest = &reference[close + 1..];
        } else {
            expanded.push('$');
            rest = &after[1..];
        }
    }
    expanded.push_str(rest);
    Ok(expanded)
}

/// Whether `name` can be an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(super) fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Applies the overriding environment variables to `document`, returning which keys they set.
///
/// A section of the wrong type is left alone: deserialisation then reports it.
pub(super) fn apply_overrides(
    document: &mut toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Overridden {
    let mut overridden = Overridden::default();
    let mut set = |document: &mut toml::Table, section: &str, field: &str, variable: &str| {
        let Some(value) = env(variable) else { return };
        let table = document
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(table) = table {
            table.insert(field.to_owned(), toml::Value::String(value));
            overridden
                .0
                .push((join(section, field), variable.to_owned()));
        }
    };
    set(document, "database", "url", DATABASE_URL);
    set(document, "api", "listen", API_LISTEN);
    set(document, "metrics", "listen", METRICS_LISTEN);
    if env(LOG).is_some() {
        set(document, "log", "level", LOG);
    } else {
        set(document, "log", "level", RUST_LOG);
    }
    set(document, "log", "format", LOG_FORMAT);

    if let Some(toml::Value::Array(chains)) = document.get_mut("evm") {
        for chain in chains {
            let Some(table) = chain.as_table_mut() else {
                continue;
            };
            let Some(name) = table
                .get("name")
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            if !is_valid_name(&name) {
                continue;
            }
            let chain_key = format!("evm[{name}]");
            let rpc_variable = evm_rpc_urls_variable(&name);
            if let Some(list) = env(&rpc_variable) {
                let urls = list
                    .split(',')
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(|url| toml::Value::String(url.to_owned()))
                    .collect();
                table.insert("rpc_urls".to_owned(), toml::Value::Array(urls));
                overridden
                    .0
                    .push((join(&chain_key, "rpc_urls"), rpc_variable));
            }
            let ws_variable = evm_ws_url_variable(&name);
            if let Some(url) = env(&ws_variable) {
                table.insert(
                    "ws_url".to_owned(),
                    toml::Value::String(url.trim().to_owned()),
                );
                overridden.0.push((join(&chain_key, "ws_url"), ws_variable));
            }
        }
    }
    overridden
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("s3cr3t".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_references_and_escapes() {
        let cases = [
            ("https://x/v2/${KEY}", "https://x/v2/s3cr3t"),
            ("${KEY}${KEY}", "s3cr3ts3cr3t"),
            ("a$b$", "a$b$"),
            ("$${KEY}", "${KEY}"),
            ("[${EMPTY}]", "[]"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                expand_string(input, "k", &env).ok().as_deref(),
                Some(expected),
                "{input}"
            );
        }
    }

    #[test]
    fn unset_or_malformed_references_are_errors_naming_the_key() {
        let missing =
            expand_string("x${NOPE}", "evm[a].rpc_urls[0]", &env).expect_err("should be rejected");
        assert_eq!(
            missing.to_string(),
            "evm[a].rpc_urls[0]: environment variable NOPE is not set"
        );
        for input in ["${KEY", "${}", "${1A}", "${A-B}"] {
            let error = expand_string(input, "k", &env).expect_err("should be rejected");
            assert!(error.to_string().starts_with("k: got "), "{error}");
        }
    }

    #[test]
    fn override_covers_nested_keys() {
        let overridden = Overridden(vec![("evm[a].rpc_urls".to_owned(), "V".to_owned())]);
        assert_eq!(overridden.variable_for("evm[a].rpc_urls[1]"), Some("V"));
        assert_eq!(overridden.variable_for("evm[a].rpc_urls"), Some("V"));
        assert_eq!(overridden.variable_for("evm[a].rpc_urls_x"), None);
    }
}
