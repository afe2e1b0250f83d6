//! The checks shared by every section: integers in range, durations, URLs, socket addresses.
//!
//! Each check takes the key it is checking so that its error names it, and the value as written so
//! that the error can show it (redacted when it is a URL).

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::environment::Overridden;
use super::error::{ConfigError, Result};
use super::keys::{is_valid_name, show, show_url};
use crate::redact::SecretUrl;

/// Longest accepted duration: beyond it, adding the duration to a timestamp could overflow, and no
/// interval or retention of an indexer is meaningfully longer.
const DURATION_MAX: Duration = Duration::from_secs(10 * 366 * 24 * 60 * 60);

/// Runs the checks and builds their errors, noting which values came from the environment.
pub(super) struct Checker<'a> {
    overridden: &'a Overridden,
}

impl<'a> Checker<'a> {
    /// A checker for a document in which `overridden` keys were set from the environment.
    pub(super) fn new(overridden: &'a Overridden) -> Self {
        Self { overridden }
    }

    /// An [`ConfigError::Invalid`] for `key`; `value` is already quoted and redacted.
    pub(super) fn invalid(
        &self,
        key: &str,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            value: value.into(),
            expected: expected.into(),
            from_env: self.overridden.variable_for(key).map(str::to_owned),
        }
    }

    /// An integer in `range`, or `default` when absent.
    pub(super) fn integer(
        &self,
        key: &str,
        raw: Option<i64>,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<u64> {
        let Some(raw) = raw else { return Ok(default) };
        match u64::try_from(raw) {
            Ok(value) if range.contains(&value) => Ok(value),
            _ => Err(self.invalid(key, raw.to_string(), describe_range(&range))),
        }
    }

    /// Like [`Checker::integer`], for values stored as `u32`.
    pub(super) fn integer_u32(
        &self,
        key: &str,
        raw: Option<i64>,
        default: u32,
        range: RangeInclusive<u32>,
    ) -> Result<u32> {
        let wide = u64::from(*range.start())..=u64::from(*range.end());
        let value = self.integer(key, raw, u64::from(default), wide.clone())?;
        // `integer` kept the value within a `u32` range, so this cannot fail.
        u32::try_from(value)
            .map_err(|_| self.invalid(key, value.to_string(), describe_range(&wide)))
    }

    /// A human-readable duration such as `"30s"`, `"15m"`, `"1h 30m"`, or `default` when absent.
    /// Zero is accepted only when `allow_zero` is set.
    pub(super) fn duration(
        &self,
        key: &str,
        raw: Option<&str>,
        default: Duration,
        allow_zero: bool,
    ) -> Result<Duration> {
        let Some(raw) = raw else { return Ok(default) };
        let expected = if allow_zero {
            "a duration such as \"30s\", \"15m\", \"1h\" or \"500ms\" (\"0s\" allowed), at most 10 years"
        } else {
            "a positive duration such as \"30s\", \"15m\", \"1h\" or \"500ms\", at most 10 years"
        };
        match humantime::parse_duration(raw.trim()) {
            Ok(value) if value <= DURATION_MAX && (allow_zero || !value.is_zero()) => Ok(value),
            Ok(_) => Err(self.invalid(key, show(raw), expected)),
            Err(reason) => Err(self.invalid(key, show(raw), format!("{expected} ({reason})"))),
        }
    }

    /// A URL whose scheme is one of `schemes` and that has a host.
    pub(super) fn url(&self, key: &str, raw: &str, schemes: &[&str]) -> Result<SecretUrl> {
        let expected = || {
            let schemes: Vec<String> = schemes
                .iter()
                .map(|scheme| format!("{scheme}://"))
                .collect();
            format!("a URL with scheme {} and a host", schemes.join(" or "))
        };
        let trimmed = raw.trim();
        let Ok(parsed) = url::Url::parse(trimmed) else {
            return Err(self.invalid(key, show_url(raw), expected()));
        };
        // The URL parser reads `https:///x` as host `x`; such a URL is a typo, not a host.
        let has_host = parsed.host_str().is_some_and(|host| !host.is_empty())
            && trimmed
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.starts_with('/'));
        if !schemes.contains(&parsed.scheme()) || !has_host {
            return Err(self.invalid(key, show_url(raw), expected()));
        }
        Ok(SecretUrl::new(trimmed))
    }

    /// A chain or network name: `[a-z0-9_-]{1,32}`, since it becomes a metric label and part of
    /// environment variable names.
    pub(super) fn name(&self, key: &str, raw: &str) -> Result<String> {
        if is_valid_name(raw) {
            Ok(raw.to_owned())
        } else {
            Err(self.invalid(
                key,
                show(raw),
                "1 to 32 characters from a-z, 0-9, `_` and `-`",
            ))
        }
    }

    /// An `IP:port` socket address, or `default` when absent.
    pub(super) fn socket_addr(
        &self,
        key: &str,
        raw: Option<&str>,
        default: SocketAddr,
    ) -> Result<SocketAddr> {
        let Some(raw) = raw else { return Ok(default) };
        raw.trim().parse().map_err(|_| {
            self.invalid(
                key,
                show(raw),
                "an IP:port socket address such as \"127.0.0.1:8080\"",
            )
        })
    }
}

/// `range` in words; a range ending at `u64::MAX` is open.
fn describe_range(range: &RangeInclusive<u64>) -> String {
    if *range.end() == u64::MAX {
        format!("an integer >= {}", range.start())
    } else {
        format!("an integer between {} and {}", range.start(), range.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_name_their_range() {
        let overridden = Overridden::default();
        let checker = Checker::new(&overridden);
        assert_eq!(checker.integer("k", None, 7, 1..=u64::MAX).ok(), Some(7));
        assert_eq!(checker.integer("k", Some(3), 7, 1..=u64::MAX).ok(), Some(3));
        let error = checker
            .integer("k", Some(-1), 7, 1..=u64::MAX)
            .expect_err("should be rejected");
        assert_eq!(error.to_string(), "k: got -1, expected an integer >= 1");
        let error = checker
            .integer_u32("k", Some(70_000), 1, 1..=65_535)
            .expect_err("should be rejected");
        assert_eq!(
            error.to_string(),
            "k: got 70000, expected an integer between 1 and 65535"
        );
    }

    #[test]
    fn durations_are_human_readable_and_bounded() {
        let overridden = Overridden::default();
        let checker = Checker::new(&overridden);
        let default = Duration::from_secs(1);
        assert_eq!(
            checker.duration("k", Some("1h 30m"), default, false).ok(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            checker.duration("k", Some("500ms"), default, false).ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            checker.duration("k", Some("0s"), default, true).ok(),
            Some(Duration::ZERO)
        );
        for bad in ["soon", "0s", "11y", "5", "", "99999999999999999999s"] {
            let error = checker
                .duration("k", Some(bad), default, false)
                .expect_err("should be rejected");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("k: got {bad:?}, expected a positive duration")),
                "{error}"
            );
        }
    }

    #[test]
    fn urls_are_checked_and_redacted_in_errors() {
        let overridden = Overridden::default();
        let checker = Checker::new(&overridden);
        let url = checker
            .url("k", "https://node.example/v2/SECRET", &["http", "https"])
            .ok();
        assert_eq!(
            url.as_ref().map(SecretUrl::expose),
            Some("https://node.example/v2/SECRET")
        );
        for bad in [
            "ftp://node.example/v2/SECRET",
            "node.example/v2/SECRET",
            "https:///SECRET",
            "wss://h/SECRET",
        ] {
            let error = checker
                .url("k", bad, &["http", "https"])
                .expect_err("should be rejected")
                .to_string();
            assert!(!error.contains("SECRET"), "{error}");
            assert!(
                error.ends_with("expected a URL with scheme http:// or https:// and a host"),
                "{error}"
            );
        }
    }
}
