//! Chain listeners: they follow a chain and tell their reconciler what happened, as
//! [`crate::chain::ChainEvent`]s, never running ahead of what the store writer acknowledged.

pub mod evm;
pub mod range;
pub mod rpc;
