//! The actor system of chainsync.
//!
//! # Layout and data flow
//!
//! ```text
//! EVM node ──► listener::evm::EvmListener ──ApplyChainEvent──► reconciler::Reconciler
//!                 (per chain, own arbiter)                         (per chain)
//!                                                                      │ WriteBatch
//!                                                                      ▼
//!                                    Postgres ◄──one transaction── writer::StoreWriter
//!                                                                  (ack: Checkpoint)
//! ```
//!
//! - [`chain`]: the pure domain: [`chain::BlockRef`], [`chain::ChainEvent`], [`chain::ReorgWindow`].
//! - [`contracts`]: event types of the stream contracts and log decoding.
//! - [`listener`]: chain listeners (EVM over alloy) with adaptive ranges and RPC failover.
//! - [`reconciler`]: reads what a write needs from the node, runs the stuck sweeper and the drift
//!   check; [`reconciler::policy`] is the pure state machine and `decide`.
//! - [`writer`]: the store writer actor; one transaction per batch or sweep (`reconcile`), with
//!   blocks and logs (`store`), transfers, history and outbox (`transfers`) and projections
//!   (`projections`), every apply next to its unwind.
//! - [`messages`]: messages crossing actors; [`metrics`]: every metric; [`error`]: the error type.

pub mod chain;
pub mod contracts;
pub mod error;
pub mod listener;
pub mod messages;
pub mod metrics;
pub mod reconciler;
pub mod ton;
pub mod writer;
