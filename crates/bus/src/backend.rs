//! The backend contract: the primitives every engine offers, on which the delivery engine
//! builds the same retry, backoff and dead-letter semantics everywhere.
//!
//! A backend never retries or dead-letters on its own: a broker's own redelivery limits,
//! dead-letter exchanges and backoff are either disabled or set beyond the engine's, so the
//! engine's policy is the only one in force and never stacks with the broker's.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    DeadLetter, Delivery, DlqQuery, Error, Failure, GroupInfo, GroupName, GroupSpec, Outgoing,
    PublishOutcome, Receipt, TopicInfo,
};

/// Parts of the contract a backend may declare it cannot honour. The conformance suite checks
/// each declared gap is a documented, tested exception (an [`Error::Unsupported`] answer where
/// one is possible) rather than a silent difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Events with the same `partitionkey` are handed to a group one at a time, in publish
    /// order, across every consumer of the group (the next waits until the previous is acked
    /// or dead-lettered).
    pub per_key_order: bool,
    /// `Outgoing::not_before` is honoured. Without it, such publishes fail `Unsupported`.
    pub delayed_publish: bool,
    /// Publishes with a `(source, id)` seen within the dedupe window are dropped.
    pub dedupe: bool,
    /// An ack or nack with a receipt whose lease expired answers [`Error::LeaseLost`].
    pub fenced_receipts: bool,
}

impl Capabilities {
    /// Everything in the contract.
    pub const ALL: Self = Self {
        per_key_order: true,
        delayed_publish: true,
        dedupe: true,
        fenced_receipts: true,
    };
}

/// An event-bus backend. Implementations are cheap to share (`Arc<dyn Backend>`).
///
/// Delivery model: each declared group has its own queue of the events published (after the
/// declaration) to topics matching its pattern. [`receive`](Backend::receive) leases events
/// to one consumer; a lease ends with [`ack`](Backend::ack) (done),
/// [`nack`](Backend::nack) (again after a delay), [`dead_letter`](Backend::dead_letter)
/// (give up), or by expiring (the consumer died: the event is delivered again).
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs, errors and metrics (`memory`, `sqlite`, `nats`).
    fn name(&self) -> &'static str;

    /// What this backend honours.
    fn capabilities(&self) -> Capabilities;

    /// Declares a group (idempotent). From when this returns, every event published to a
    /// matching topic is kept for the group until acked or dead-lettered, even while no
    /// consumer runs. Re-declaring a group with another pattern is [`Error::Conflict`].
    async fn declare_group(&self, spec: &GroupSpec) -> Result<(), Error>;

    /// Deletes a group with its pending events and its dead letters (idempotent).
    async fn delete_group(&self, group: &GroupName) -> Result<(), Error>;

    /// Publishes a batch. `Ok` means every event is durable on this backend (see docs/bus.md
    /// for what durable means per backend) and routed; the outcomes are in input order.
    /// On `Err` none, some or all may be stored: retry the batch with the same ids.
    async fn publish(&self, batch: Vec<Outgoing>) -> Result<Vec<PublishOutcome>, Error>;

    /// Leases up to `max` deliverable events of `group`, waiting up to `wait` for the first
    /// one. Each lease lasts `lease`; an unsettled event becomes deliverable again when it ends.
    /// An empty answer after `wait` is normal.
    async fn receive(
        &self,
        group: &GroupName,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, Error>;

    /// Settles a delivery as done; durable when `Ok`.
    async fn ack(&self, receipt: &Receipt) -> Result<(), Error>;

    /// Ends the lease now; the event becomes deliverable again after `delay`.
    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), Error>;

    /// Moves the delivery to the group's dead-letter queue with `failure`. Exactly one entry
    /// is created per dead-lettered delivery.
    async fn dead_letter(&self, receipt: &Receipt, failure: Failure) -> Result<(), Error>;

    /// Lists dead letters, oldest first.
    async fn dlq_list(&self, query: &DlqQuery) -> Result<Vec<DeadLetter>, Error>;

    /// One dead letter by id.
    async fn dlq_get(&self, id: &str) -> Result<DeadLetter, Error>;

    /// Re-queues a dead letter to its group (attempt count starts again) and removes it from
    /// the dead-letter queue, atomically where the engine allows.
    async fn dlq_replay(&self, id: &str) -> Result<(), Error>;

    /// Deletes dead letters: the ids given, or every entry of `group` when `ids` is empty.
    /// Answers how many were deleted.
    async fn dlq_purge(&self, group: &GroupName, ids: &[String]) -> Result<u64, Error>;

    /// Topics that have had events published.
    async fn topics(&self) -> Result<Vec<TopicInfo>, Error>;

    /// Declared groups with their lag.
    async fn groups(&self) -> Result<Vec<GroupInfo>, Error>;
}
