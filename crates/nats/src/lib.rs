//! The event bus on NATS JetStream (`flotilla-nats`, layer L2).
//!
//! This crate owns [`NatsBackend`], an implementation of the `flotilla-bus` backend contract
//! on one JetStream stream per bus: events on `<prefix>.ev.<topic>`, one durable pull
//! consumer per group filtered on the group's pattern (NATS wildcards are the bus's), publish
//! acks as the durability point, `Nats-Msg-Id` = (source, id) for publisher dedupe, nak with
//! delay for retries, term plus a record on `<prefix>.dlq.<group>` for dead letters. Delayed
//! publish and DLQ replay work around what NATS 2.9 lacks (scheduled messages, multi-subject
//! filters); see [`mover`] and [`topology`].
//!
//! It does not own retry policy, backoff or dead-letter decisions: consumers have unlimited
//! `max_deliver`, so the delivery engine in `flotilla-bus` decides, identically on every
//! backend. It does not honour per-key ordering across consumers (declared in its
//! capabilities). The binary (`flotilla-cli`) and tests depend on it; nothing else does.

mod admin;
mod backend;
mod codec;
mod dlq;
mod error;
mod lease;
pub mod mover;
mod options;
mod publish;
mod receive;
mod settle;
pub mod topology;

use std::time::Duration;

use async_trait::async_trait;
use flotilla_bus::{
    Backend, Capabilities, DeadLetter, Delivery, DlqQuery, Error as BusError, Failure, GroupInfo,
    GroupName, GroupSpec, Outgoing, PublishOutcome, Receipt, TopicInfo,
};

pub use backend::NatsBackend;
pub use error::Error;
pub use options::Options;

/// What this backend honours: everything but per-key order across consumers (a JetStream
/// consumer can only serialize all of its messages, `max_ack_pending = 1`, not one key's)
/// and fenced receipts (JetStream accepts an ack after the `ack_wait` expired).
pub const CAPABILITIES: Capabilities = Capabilities {
    per_key_order: false,
    delayed_publish: true,
    dedupe: true,
    fenced_receipts: false,
};

#[async_trait]
impl Backend for NatsBackend {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn declare_group(&self, spec: &GroupSpec) -> Result<(), BusError> {
        self.declare(spec).await
    }

    async fn delete_group(&self, group: &GroupName) -> Result<(), BusError> {
        self.delete(group).await
    }

    async fn publish(&self, batch: Vec<Outgoing>) -> Result<Vec<PublishOutcome>, BusError> {
        publish::publish_batch(&self.inner.js, &self.inner.opts, batch).await
    }

    async fn receive(
        &self,
        group: &GroupName,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        self.receive_leased(group, max, lease, wait).await
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), BusError> {
        self.settle(receipt, "+ACK".to_owned()).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), BusError> {
        self.nack_after(receipt, delay).await
    }

    async fn dead_letter(&self, receipt: &Receipt, failure: Failure) -> Result<(), BusError> {
        self.dead_letter_to_dlq(receipt, failure).await
    }

    async fn dlq_list(&self, query: &DlqQuery) -> Result<Vec<DeadLetter>, BusError> {
        self.list_dead_letters(query).await
    }

    async fn dlq_get(&self, id: &str) -> Result<DeadLetter, BusError> {
        self.dead_letter_by_id(id).await
    }

    async fn dlq_replay(&self, id: &str) -> Result<(), BusError> {
        self.replay_dead_letter(id).await
    }

    async fn dlq_purge(&self, group: &GroupName, ids: &[String]) -> Result<u64, BusError> {
        self.purge_dead_letters(group, ids).await
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>, BusError> {
        self.list_topics().await
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, BusError> {
        self.list_groups().await
    }
}
