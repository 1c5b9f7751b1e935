//! The event bus on Redis Streams (`flotilla-redis`, layer L2).
//!
//! This crate owns [`RedisBackend`], an implementation of the `flotilla-bus` backend contract
//! on one Redis server: a stream per consumer group (`<prefix>:s:<group>`, read through a
//! Redis consumer group), filled at publish time by a Lua script that routes each event to
//! every group whose pattern matches; a sorted set of visibility times per group that makes
//! nack-with-delay and expired leases (crashed consumers) claimable again with `XCLAIM`; a
//! sorted set of delayed publishes moved when due; a sorted set of the (source, id) pairs
//! published within the dedupe window, scored by the time their window ends; and one DLQ
//! stream. Every state change is one Lua script, so each is
//! atomic (exactly one dead letter per dead-lettered delivery, replay moves atomically).
//!
//! Durable means "in the Redis server's memory": this server runs without RDB or AOF, so a
//! Redis restart loses everything. With AOF `appendfsync always` a publish `Ok` would mean on
//! disk. It does not own retry policy or dead-letter decisions (the delivery engine's) and
//! does not honour per-key ordering across consumers (declared in [`CAPABILITIES`]). Single
//! Redis only (not Redis Cluster: a publish touches keys chosen by the declared groups). The
//! binary (`flotilla-cli`) and tests depend on it.
//!
//! With the `ratelimit` feature it also owns [`RedisRateLimiter`], the shared rate-limiter
//! contract of `flotilla-resilience` (GCRA in one script on the server's clock), which lets
//! gateway replicas share one budget per caller.

mod backend;
mod codec;
mod dlq;
mod error;
mod ops;
mod options;
#[cfg(feature = "ratelimit")]
mod ratelimit;
mod scripts;

use std::time::Duration;

use async_trait::async_trait;
use flotilla_bus::{
    Backend, Capabilities, DeadLetter, Delivery, DlqQuery, Error as BusError, Failure, GroupInfo,
    GroupName, GroupSpec, Outgoing, PublishOutcome, Receipt, TopicInfo,
};

pub use backend::RedisBackend;
pub use error::Error;
pub use options::Options;
#[cfg(feature = "ratelimit")]
pub use ratelimit::{RateLimitOptions, RedisRateLimiter};

/// What this backend honours: everything but per-key order across consumers.
pub const CAPABILITIES: Capabilities = Capabilities {
    per_key_order: false,
    delayed_publish: true,
    dedupe: true,
    fenced_receipts: true,
};

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
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
        self.ack_entry(receipt).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), BusError> {
        self.nack_entry(receipt, delay).await
    }

    async fn dead_letter(&self, receipt: &Receipt, failure: Failure) -> Result<(), BusError> {
        self.dead_letter_entry(receipt, failure).await
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
        self.list_topics().await
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, BusError> {
        self.list_groups().await
    }
}
