//! The event-bus contract (layer L1).
//!
//! This crate owns what "publish an event" and "subscribe to events" mean in Flotilla:
//! the [`Backend`] trait (the primitives every engine offers: durable publish, leased receive
//! per consumer group, ack, nack with a delay, dead-lettering, DLQ inspect/replay/purge,
//! delayed publish, publisher dedupe), the delivery engine built on them ([`Bus`],
//! subscriptions with filters, concurrency, handler timeouts, ordering keys, and one
//! [`DeliveryPolicy`] of max deliveries, backoff and dead letters that runs the same on every
//! backend), an in-memory backend ([`MemoryBackend`]) and, behind the `conformance` feature,
//! the [`conformance`] suite every backend runs.
//!
//! It does not own storage or transports: the SQLite backend lives in `flotilla-sqlite`, the
//! broker backends in `flotilla-nats`, `flotilla-amqp` and `flotilla-redis`, the HTTP API in
//! `flotilla-broker`. Those, the SDK and the saga orchestrator depend on this crate; it
//! depends only on `flotilla-core`.

mod backend;
mod engine;
mod error;
mod filter;
pub mod memory;
mod metrics;
mod model;
pub mod outbox;
mod policy;

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "conformance")]
pub mod conformance;

pub use backend::{Backend, Capabilities};
pub use engine::{Bus, HandlerError, Received, Subscription, SubscriptionBuilder, Typed};
pub use error::Error;
pub use filter::Filter;
pub use memory::MemoryBackend;
pub use metrics::Metrics;
pub use model::{
    DeadLetter, Delivery, DlqQuery, EXT_PARTITION_KEY, Failure, FailureReason, GroupInfo,
    GroupName, GroupSpec, Outgoing, PublishOutcome, Receipt, TopicInfo,
};
pub use policy::{Backoff, DeliveryPolicy};
