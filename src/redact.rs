//! Keeping secrets out of logs, error messages and metrics.
//!
//! RPC providers put API keys in the URL path (`https://eth-mainnet.example/v2/<key>`) or query, and
//! database URLs carry passwords in their userinfo. Anything that prints a URL goes through
//! [`redact_url`], which keeps only what an operator needs to tell endpoints apart: the scheme, the
//! host and the port. [`SecretUrl`] and [`Redacted`] make that the default: their `Debug` and
//! `Display` output is redacted, and the real value is reachable only through an explicit
//! `expose()` call.
//!
//! ```
//! use chainsync::redact::{redact_url, SecretUrl};
//!
//! assert_eq!(redact_url("https://eth-mainnet.example/v2/SECRET"), "https://eth-mainnet.example/***");
//! let url = SecretUrl::new("postgres://app:hunter2@db:5432/chainsync");
//! assert_eq!(url.to_string(), "postgres://***@db:5432/***");
//! assert_eq!(url.expose(), "postgres://app:hunter2@db:5432/chainsync");
//! ```

use std::fmt;

/// What replaces a hidden part of a URL (or a whole secret).
pub const MASK: &str = "***";

/// Redacts a URL down to `scheme://host[:port]`.
///
/// Userinfo, path, query and fragment are each replaced by `***` where present; an empty path or a
/// lone `/` is kept as is, since it reveals nothing. Text that does not look like
/// `scheme://authority...` is replaced as a whole, because there is no way to tell which part of
/// it might be secret.
///
/// ```
/// use chainsync::redact::redact_url;
///
/// assert_eq!(redact_url("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
/// assert_eq!(redact_url("wss://user:pass@node.example:8546/ws?key=1"), "wss://***@node.example:8546/***?***");
/// assert_eq!(redact_url("not a url"), "***");
/// ```
pub fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return MASK.to_owned();
    };
    if !is_scheme(scheme) {
        return MASK.to_owned();
    }

    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The userinfo ends at the last `@`: a password may itself contain `@` when badly escaped.
    let (has_userinfo, host_port) = match authority.rfind('@') {
        Some(at) => (true, &authority[at + 1..]),
        None => (false, authority),
    };
    if !host_port.chars().all(is_host_char) {
        return MASK.to_owned();
    }

    let mut out = String::with_capacity(scheme.len() + host_port.len() + 16);
    out.push_str(scheme);
    out.push_str("://");
    if has_userinfo {
        out.push_str(MASK);
        out.push('@');
    }
    out.push_str(host_port);

    let (path_and_query, fragment) = match tail.split_once('#') {
        Some((before, after)) => (before, Some(after)),
        None => (tail, None),
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((before, after)) => (before, Some(after)),
        None => (path_and_query, None),
    };
    if !path.is_empty() {
        out.push('/');
        if path != "/" {
            out.push_str(MASK);
        }
    }
    if query.is_some() {
        out.push('?');
        out.push_str(MASK);
    }
    if fragment.is_some() {
        out.push('#');
        out.push_str(MASK);
    }
    out
}

/// Redacts every URL found in free text (an error message from a library, say) with
/// [`redact_url`], leaving the rest of the text alone.
///
/// A URL is recognised by its `scheme://` and runs to the next whitespace, quote, backtick or angle
/// bracket, less any closing punctuation at its end; erring towards a longer match only hides more.
///
/// ```
/// use chainsync::redact::redact_urls_in_text;
///
/// assert_eq!(
///     redact_urls_in_text("error sending request for url (https://node.example/v2/KEY): timed out"),
///     "error sending request for url (https://node.example/***): timed out"
/// );
/// assert_eq!(redact_urls_in_text("no url here"), "no url here");
/// ```
pub fn redact_urls_in_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(marker) = rest.find("://") {
        let scheme_start = rest[..marker]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_scheme_char(c))
            .last()
            .map_or(marker, |(i, _)| i);
        let token_end = rest[marker..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .map_or(rest.len(), |offset| marker + offset);
        // Punctuation closing the sentence or a bracket ("(see https://h/x)." ) stays outside.
        let url_end = marker
            + rest[marker..token_end]
                .trim_end_matches(TRAILING_PUNCTUATION)
                .len();
        out.push_str(&rest[..scheme_start]);
        out.push_str(&redact_url(&rest[scheme_start..url_end]));
        rest = &rest[url_end..];
    }
    out.push_str(rest);
    out
}

/// Characters that end a URL found in text when they are its last ones.
const TRAILING_PUNCTUATION: &[char] = &[')', ']', '}', '.', ',', ';', ':', '!', '?'];

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(is_scheme_char)
}

fn is_scheme_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')
}

/// Characters that may appear in a host, an IPv6 literal or a port. Anything else in the
/// authority means the text is not the URL it seems to be, and nothing of it is kept.
fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']' | '%' | '~')
}

/// A URL that may carry a secret (an API key in the path, a password in the userinfo).
///
/// `Debug` and `Display` print [`redact_url`] of it; [`SecretUrl::expose`] returns the real URL for
/// the one place that needs it (the HTTP or database client).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL. No validation happens here: the configuration validates URLs before wrapping
    /// them.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The real URL, secrets included. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its secrets hidden: `scheme://host[:port]` plus `***` placeholders.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }

    /// The URL scheme (`https`, `wss`, `postgres`, ...), or `""` when there is none.
    pub fn scheme(&self) -> &str {
        self.0.split_once("://").map_or("", |(scheme, _)| scheme)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SecretUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Any secret value (a webhook signing key, an API token) whose `Debug` and `Display` print `***`.
///
/// ```
/// use chainsync::redact::Redacted;
///
/// let secret = Redacted::new(String::from("hunter2"));
/// assert_eq!(format!("{secret} {secret:?}"), "*** Redacted(***)");
/// assert_eq!(secret.expose(), "hunter2");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    /// Wraps a secret.
    pub fn new(secret: T) -> Self {
        Self(secret)
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Redacted<T> {
    fn from(secret: T) -> Self {
        Self(secret)
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redacted({MASK})")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_scheme_host_and_port_only() {
        let cases = [
            (
                "https://eth-mainnet.example/v2/SECRET",
                "https://eth-mainnet.example/***",
            ),
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            ("http://127.0.0.1:8545/", "http://127.0.0.1:8545/"),
            (
                "https://node.example?apikey=SECRET",
                "https://node.example?***",
            ),
            ("https://node.example/#SECRET", "https://node.example/#***"),
            (
                "postgres://postgres@127.0.0.1:5432/chainsync",
                "postgres://***@127.0.0.1:5432/***",
            ),
            ("postgres://u:p@ss@db/x", "postgres://***@db/***"),
            ("wss://[::1]:8546/ws/SECRET", "wss://[::1]:8546/***"),
            ("https://SECRET@", "https://***@"),
            ("", "***"),
            ("SECRET", "***"),
            ("://SECRET", "***"),
            ("1http://x/SECRET", "***"),
            ("https://a b/SECRET", "***"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_url(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn redacts_urls_inside_text() {
        assert_eq!(
            redact_urls_in_text(
                r#"invalid type: string "https://x.example/v2/SECRET", expected u64"#
            ),
            r#"invalid type: string "https://x.example/***", expected u64"#
        );
        assert_eq!(
            redact_urls_in_text("a wss://h/SECRET and http://u:SECRET@h2 end"),
            "a wss://h/*** and http://***@h2 end"
        );
        assert_eq!(redact_urls_in_text("trailing ://SECRET"), "trailing ***");
        assert_eq!(
            redact_urls_in_text("(see https://h/SECRET)."),
            "(see https://h/***)."
        );
        assert_eq!(
            redact_urls_in_text("at https://h:1, then"),
            "at https://h:1, then"
        );
        assert_eq!(redact_urls_in_text("é://SECRET ok"), "é*** ok");
    }

    #[test]
    fn secret_wrappers_never_print_the_secret() {
        let url = SecretUrl::new("https://user:SECRET@host.example/SECRET?SECRET");
        for printed in [format!("{url}"), format!("{url:?}"), url.redacted()] {
            assert!(!printed.contains("SECRET"), "{printed}");
        }
        assert_eq!(url.scheme(), "https");
        let secret = Redacted::new("SECRET");
        assert!(!format!("{secret}{secret:?}").contains("SECRET"));
    }
}
