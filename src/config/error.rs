//! The one error type of configuration loading.

use std::path::PathBuf;

/// The result of loading or validating configuration.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Why a configuration was rejected.
///
/// Every message starts with the key it is about (`evm[devnet].confirmations`,
/// `webhooks.endpoints[0].url`), then shows the offending value (URLs redacted) and what is
/// expected instead, so that `chainsync check-config` output is enough to fix the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("invalid TOML at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A `${VAR}` reference names a variable that is not set.
    #[error("{key}: environment variable {variable} is not set")]
    MissingEnv {
        /// The key whose value references the variable.
        key: String,
        /// The variable's name.
        variable: String,
    },
    /// A key that the schema does not have (often a typo).
    #[error("{key}: unknown key, expected {expected}")]
    UnknownKey {
        /// The full path of the unknown key.
        key: String,
        /// The keys allowed at that place, as serde lists them.
        expected: String,
    },
    /// A key that has no default is absent.
    #[error("{key}: required key is missing")]
    MissingKey {
        /// The full path of the missing key.
        key: String,
    },
    /// A value of the wrong TOML type, or not one of the allowed words.
    #[error("{key}: {message}")]
    WrongType {
        /// The key whose value has the wrong type.
        key: String,
        /// What was found and what was expected.
        message: String,
    },
    /// A value of the right type that is not acceptable.
    #[error("{key}: got {value}, expected {expected}{}", origin_note(.from_env.as_deref()))]
    Invalid {
        /// The key whose value is wrong.
        key: String,
        /// The value as found, quoted, with URLs redacted.
        value: String,
        /// What would be accepted.
        expected: String,
        /// The environment variable the value came from, when it overrode the file.
        from_env: Option<String>,
    },
    /// The liteservers file of a TON network is unusable.
    #[error("{key}: {}: {detail}", file.display())]
    LiteserversFile {
        /// The `ton[...].liteservers` key that names the file.
        key: String,
        /// The file as configured.
        file: PathBuf,
        /// What is wrong with it (the JSON path inside the file comes first where it helps).
        detail: String,
    },
}

impl ConfigError {
    /// The configuration key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Read { .. } | Self::Syntax { .. } => None,
            Self::MissingEnv { key, .. }
            | Self::UnknownKey { key, .. }
            | Self::MissingKey { key }
            | Self::WrongType { key, .. }
            | Self::Invalid { key, .. }
            | Self::LiteserversFile { key, .. } => Some(key),
        }
    }
}

fn origin_note(from_env: Option<&str>) -> String {
    from_env.map_or_else(String::new, |variable| {
        format!(" (value from environment variable {variable})")
    })
}
