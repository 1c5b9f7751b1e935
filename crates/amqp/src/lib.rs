//! The event bus on RabbitMQ (`flotilla-amqp`, layer L2, on lapin).
//!
//! This crate owns [`AmqpBackend`], an implementation of the `flotilla-bus` backend contract
//! on AMQP 0-9-1: a durable topic exchange, one durable quorum queue per consumer group bound
//! with the group's pattern, publisher confirms as the durability point, leases kept in the
//! process on top of AMQP consumers, delayed retries through per-delay retry queues that
//! dead-letter back to the group queue (see [`topology`] for why), and a DLQ quorum queue per
//! group that is also the broker's own dead-letter target, so nothing is dropped silently.
//!
//! It does not own retry policy or dead-letter decisions: the quorum queues' delivery limit is
//! a backstop far above the engine's, so the engine in `flotilla-bus` decides. Declared
//! exceptions ([`CAPABILITIES`]): no publisher dedupe (RabbitMQ has none without a plugin), no
//! per-key order across consumers. Delayed publish goes through per-bucket delay queues. The binary (`flotilla-cli`)
//! and tests depend on it.

mod backend;
mod codec;
mod consume;
mod delay;
mod dlq;
mod error;
mod options;
mod settle;
pub mod topology;

use std::time::Duration;

use async_trait::async_trait;
use flotilla_bus::{
    Backend, Capabilities, DeadLetter, Delivery, DlqQuery, Error as BusError, Failure, GroupInfo,
    GroupName, GroupSpec, Outgoing, PublishOutcome, Receipt, TopicInfo,
};

pub use backend::AmqpBackend;
pub use error::Error;
pub use options::Options;

/// What this backend honours. Dedupe would need the deduplication plugin, which a stock
/// RabbitMQ lacks; per-key order across consumers would need single-active-consumer queues
/// per key.
pub const CAPABILITIES: Capabilities = Capabilities {
    per_key_order: false,
    delayed_publish: true,
    dedupe: false,
    fenced_receipts: true,
};

#[async_trait]
impl Backend for AmqpBackend {
    fn name(&self) -> &'static str {
        "amqp"
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
        self.publish_batch(batch).await
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
        self.ack_delivery(receipt).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), BusError> {
        self.nack_delivery(receipt, delay).await
    }

    async fn dead_letter(&self, receipt: &Receipt, failure: Failure) -> Result<(), BusError> {
        self.dead_letter_delivery(receipt, failure).await
    }

    async fn dlq_list(&self, query: &DlqQuery) -> Result<Vec<DeadLetter>, BusError> {
        self.list_dead_letters(query).await
    }

    async fn dlq_get(&self, id: &str) -> Result<DeadLetter, BusError> {
        self.dead_letter_by_id(id).await
    }

    async fn dlq_replay(&self, id: &str) -> Result<(), BusError> {
        self.replay(id).await
    }

    async fn dlq_purge(&self, group: &GroupName, ids: &[String]) -> Result<u64, BusError> {
        self.purge(group, ids).await
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>, BusError> {
        Ok(self.list_topics())
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, BusError> {
        self.list_groups().await
    }
}
