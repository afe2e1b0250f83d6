//! TON: decoding transactions, the liteserver client, the listener.

pub mod classify;
pub mod client;
pub mod decode;
