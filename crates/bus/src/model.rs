//! The data the contract speaks in: what is published, what is delivered, what is
//! dead-lettered, and what can be listed.

use std::fmt;
use std::time::{Duration, SystemTime};

use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The CloudEvents partitioning extension (`partitionkey`): events with the same key are
/// delivered to a group one at a time, in publish order.
pub const EXT_PARTITION_KEY: &str = "partitionkey";

/// A consumer group: 1 to 128 ASCII letters, digits, `_`, `-` or `.`. Consumers in one
/// group compete for its events; every group gets its own copy of each event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupName(String);

impl GroupName {
    /// Validates a group name; the error names the value and the rule.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        let ok = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
        if name.is_empty() || name.len() > 128 || !name.chars().all(ok) {
            return Err(Error::InvalidInput(format!(
                "group name {name:?} must be 1 to 128 ASCII letters, digits, '_', '-' or '.'"
            )));
        }
        Ok(Self(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<GroupName> for String {
    fn from(g: GroupName) -> Self {
        g.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event on its way to a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Where it is published.
    pub topic: TopicName,
    /// The event; `(source, id)` is its identity for publisher dedupe.
    pub event: CloudEvent,
    /// Deliver not before this time (delayed publish). `None`: deliverable at once.
    pub not_before: Option<SystemTime>,
}

impl Outgoing {
    /// An event for `topic`, deliverable at once.
    pub fn new(topic: TopicName, event: CloudEvent) -> Self {
        Self {
            topic,
            event,
            not_before: None,
        }
    }

    /// Delays delivery until `at`.
    pub fn deliver_at(mut self, at: SystemTime) -> Self {
        self.not_before = Some(at);
        self
    }

    /// Delays delivery by `delay` from now.
    pub fn deliver_after(self, delay: Duration) -> Self {
        self.deliver_at(SystemTime::now() + delay)
    }

    /// The ordering key: the event's `partitionkey` extension, if it is a string.
    pub fn ordering_key(&self) -> Option<&str> {
        self.event.extension_str(EXT_PARTITION_KEY)
    }
}

/// What happened to one published event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishOutcome {
    /// Stored durably (as the backend defines durable) and routed to every matching group.
    Stored,
    /// An event with the same `(source, id)` was published within the dedupe window; this
    /// one was dropped. Safe to treat as success.
    Duplicate,
}

/// The proof of holding a delivery's lease: what `ack`, `nack` and `dead_letter` take.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// The group the delivery belongs to.
    pub group: GroupName,
    /// Backend-specific token (opaque to everyone else).
    pub token: String,
}

/// An event handed to one consumer of a group, leased until it is settled or the lease ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Settles this delivery.
    pub receipt: Receipt,
    /// The topic it was published to.
    pub topic: TopicName,
    /// The event.
    pub event: CloudEvent,
    /// 1 on the first delivery to this group, then one more per redelivery (nack, lease
    /// expiry). Reset to 0 by a DLQ replay.
    pub attempt: u32,
    /// When the backend stored the event.
    pub published_at: SystemTime,
}

/// Why an event was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The handler failed (error or timeout) on its last allowed delivery.
    MaxDeliveries,
    /// The handler rejected the event as unprocessable (a poison message).
    Rejected,
}

/// The failure a dead letter carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why it was dead-lettered.
    pub reason: FailureReason,
    /// The handler's last error, as text.
    pub last_error: String,
}

/// An event a group gave up on, with the story of its failure.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Backend-assigned id, unique within the backend.
    pub id: String,
    /// The group that gave up.
    pub group: GroupName,
    /// The topic it was published to.
    pub topic: TopicName,
    /// The event, unchanged.
    pub event: CloudEvent,
    /// Why.
    pub reason: FailureReason,
    /// Deliveries made to the group before giving up.
    pub attempts: u32,
    /// The handler's last error.
    pub last_error: String,
    /// When the backend stored the event.
    pub published_at: SystemTime,
    /// When it was dead-lettered.
    pub dead_lettered_at: SystemTime,
}

/// Which dead letters to list, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlqQuery {
    /// Only this group's (all groups when `None`).
    pub group: Option<GroupName>,
    /// Only entries after this id (for paging; ids order by dead-lettering time).
    pub after: Option<String>,
    /// At most this many (0 means the backend's default of 100).
    pub limit: usize,
}

/// A declared consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Its name.
    pub name: GroupName,
    /// The topics it receives.
    pub pattern: TopicPattern,
}

/// What a backend knows about a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// The topic.
    pub name: TopicName,
    /// Events stored on it since the backend started counting (dedupe hits excluded).
    pub published: u64,
}

/// What a backend knows about a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group's declaration.
    pub spec: GroupSpec,
    /// Events routed to the group and not yet acked or dead-lettered (consumer lag),
    /// including in-flight and delayed ones.
    pub pending: u64,
    /// Entries in the group's dead-letter queue.
    pub dead_letters: u64,
}
