//! TON: decoding transactions ([`decode`]), what they mean for a watched account
//! ([`classify`]), the liteserver client ([`client`]), the listener actor ([`listener`]) and its
//! database side ([`store`]).

pub mod classify;
pub mod client;
pub mod decode;
pub mod listener;
pub mod store;
