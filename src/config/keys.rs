//! How keys and values are named in error messages.
//!
//! Entries of `[[evm]]` and `[[ton]]` are named by their `name` (`evm[devnet].confirmations`) as
//! soon as that name is valid, and by position (`evm[0]`) otherwise; nested arrays use positions
//! (`evm[devnet].contracts[1].address`).

use crate::redact::{redact_url, redact_urls_in_text};

/// Longest value shown in an error message, in characters.
const SHOWN_VALUE_MAX_CHARS: usize = 80;

/// Longest chain or network name: it becomes a metric label and part of environment variable names.
pub(super) const NAME_MAX_LEN: usize = 32;

/// Whether `name` is a valid chain or network name: `[a-z0-9_-]{1,32}`.
pub(super) fn is_valid_name(name: &str) -> bool {
    (1..=NAME_MAX_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The key of the `index`-th entry of a top-level array section (`evm`, `ton`).
pub(super) fn element_key(section: &str, index: usize, name: Option<&str>) -> String {
    match name {
        Some(name) if is_valid_name(name) => format!("{section}[{name}]"),
        _ => format!("{section}[{index}]"),
    }
}

/// `parent.child`, quoting `child` when it is not a bare TOML key.
pub(super) fn join(parent: &str, child: &str) -> String {
    let bare = !child.is_empty()
        && child
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let child = if bare {
        child.to_owned()
    } else {
        format!("{child:?}")
    };
    if parent.is_empty() {
        child
    } else {
        format!("{parent}.{child}")
    }
}

/// `parent[index]`.
pub(super) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// A string value as shown in an error message: quoted and escaped, any URL in it redacted, and
/// cut short when long.
pub(super) fn show(value: &str) -> String {
    quote(&redact_urls_in_text(value))
}

/// A value that is meant to be a URL, as shown in an error message: always redacted, even when it
/// does not parse as one.
pub(super) fn show_url(value: &str) -> String {
    quote(&redact_url(value.trim()))
}

fn quote(value: &str) -> String {
    if value.chars().count() > SHOWN_VALUE_MAX_CHARS {
        let cut: String = value.chars().take(SHOWN_VALUE_MAX_CHARS).collect();
        format!("{cut:?}...")
    } else {
        format!("{value:?}")
    }
}

/// The names of the `[[evm]]` and `[[ton]]` entries of a parsed document, used to name keys before
/// the document has been validated.
#[derive(Debug, Default)]
pub(super) struct EntryNames {
    evm: Vec<Option<String>>,
    ton: Vec<Option<String>>,
}

impl EntryNames {
    /// Reads the entry names of `document`, whatever shape it has.
    pub(super) fn of(document: &toml::Table) -> Self {
        let names = |section: &str| -> Vec<Option<String>> {
            match document.get(section) {
                Some(toml::Value::Array(entries)) => entries
                    .iter()
                    .map(|entry| {
                        entry
                            .get("name")
                            .and_then(toml::Value::as_str)
                            .map(str::to_owned)
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        Self {
            evm: names("evm"),
            ton: names("ton"),
        }
    }

    /// The key of the `index`-th entry of `section` when `section` is `evm` or `ton`.
    pub(super) fn entry_key(&self, section: &str, index: usize) -> Option<String> {
        let names = match section {
            "evm" => &self.evm,
            "ton" => &self.ton,
            _ => return None,
        };
        let name = names.get(index).and_then(Option::as_deref);
        Some(element_key(section, index, name))
    }

    /// Renders the path of a deserialisation error the same way validation errors name keys.
    pub(super) fn render(&self, path: &serde_path_to_error::Path) -> String {
        use serde_path_to_error::Segment;

        let mut key = String::new();
        let mut top_level_section: Option<String> = None;
        for (depth, segment) in path.iter().enumerate() {
            match segment {
                Segment::Map { key: child } => {
                    if depth == 0 {
                        top_level_section = Some(child.clone());
                    }
                    key = join(&key, child);
                }
                Segment::Seq { index: position } => {
                    let entry = match (depth, &top_level_section) {
                        (1, Some(section)) => self.entry_key(section, *position),
                        _ => None,
                    };
                    key = entry.unwrap_or_else(|| index(&key, *position));
                }
                Segment::Enum { .. } | Segment::Unknown => {}
            }
        }
        if key.is_empty() {
            "(top level)".to_owned()
        } else {
            key
        }
    }
}
