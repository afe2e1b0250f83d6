//! The local devnet.
