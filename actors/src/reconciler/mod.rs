//! The reconciler of one chain: receives chain events from the listener, decides what they mean
//! for tracked transfers, and hands the result to the store writer in one batch.
//!
//! Today it passes each event through to the writer unchanged and relays the writer's
//! acknowledgement back to the listener.

use std::time::Duration;

use actix::prelude::*;

use crate::error::{Error, Result};
use crate::messages::{ApplyChainEvent, Checkpoint, WriteBatch};
use crate::metrics::METRICS;

/// How long the reconciler waits for the writer to commit one batch.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// The reconciler actor of one chain.
pub struct Reconciler {
    writer: Recipient<WriteBatch>,
}

impl Reconciler {
    /// A reconciler writing through `writer`.
    pub fn new(writer: Recipient<WriteBatch>) -> Self {
        Self { writer }
    }
}

impl Actor for Reconciler {
    type Context = Context<Self>;
}

impl Handler<ApplyChainEvent> for Reconciler {
    type Result = ResponseFuture<Result<Checkpoint>>;

    fn handle(&mut self, msg: ApplyChainEvent, _ctx: &mut Self::Context) -> Self::Result {
        METRICS
            .actor_mailbox_messages
            .with_label_values(&["reconciler"])
            .dec();
        let writer = self.writer.clone();
        Box::pin(async move {
            METRICS
                .actor_mailbox_messages
                .with_label_values(&["store_writer"])
                .inc();
            writer
                .send(WriteBatch { event: msg.0 })
                .timeout(WRITE_TIMEOUT)
                .await
                .map_err(|err| Error::Mailbox {
                    actor: "store_writer",
                    message: err.to_string(),
                })?
        })
    }
}
