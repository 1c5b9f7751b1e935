//! The event-store contract (layer L1) and the event-sourcing toolkit.
//!
//! This crate owns what an event store is: streams named by [`StreamId`](flotilla_core::StreamId)
//! with a category, appends guarded by an [`ExpectedVersion`] and made idempotent by event ids,
//! reads by stream and of `$all` (by position, category or type), catch-up-then-live and
//! persistent [subscriptions](subscription), snapshots and soft deletion with truncation. It
//! ships the [`MemoryEventStore`], the conformance suite every backend runs (feature
//! `conformance`), and the toolkit services build on: [`Aggregate`](aggregate::Aggregate),
//! [`Repository`](repository::Repository), [projections](projection) and
//! [upcasters](upcast).
//!
//! It owns no storage engine: `flotilla-sqlite` (feature `eventstore`) and `flotilla-postgres`
//! implement [`EventStore`]; `flotilla-store` serves it over HTTP; the SDK re-exports the
//! toolkit; the saga orchestrator keeps its state through it. It depends only on
//! `flotilla-core`.

pub mod aggregate;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod memory;
pub mod model;
pub mod plan;
pub mod projection;
pub mod repository;
pub mod store;
pub mod subscription;
pub mod upcast;

pub use aggregate::{Aggregate, DomainEvent};
pub use error::{Error, Result};
pub use memory::MemoryEventStore;
pub use model::{
    AppendResult, Direction, ExpectedVersion, Filter, Metadata, NewEvent, Position, ReadAll,
    ReadStream, RecordedEvent, Snapshot, StreamInfo, Version,
};
pub use repository::Repository;
pub use store::EventStore;
pub use subscription::{EventHandler, Subscription, run_persistent, subscribe_all};
