//! Embedded storage on SQLite (layer L2).
//!
//! One database file per data directory, in WAL mode. All writes go through one [`Writer`]
//! thread that batches whatever writes are waiting into one transaction (group commit) and
//! answers each caller only after that transaction is durable (`synchronous=FULL`). Reads use a
//! small pool of read-only connections and never wait for the writer.
//!
//! A database is not trusted blindly: an existing file is checked before use and refused when
//! empty or damaged, and once SQLite reports corruption no further write is acknowledged.
//! [`Database::checkpoint`] leaves the file whole on its own; [`Database::backup`] copies it
//! while it serves.
//!
//! The contract implementations (bus, event store, registry catalog) live in feature-gated
//! modules on top of this shared engine; nothing above L4 and the SDK's features depends on
//! this crate.

mod backup;
#[cfg(feature = "bus")]
pub mod bus;
#[cfg(feature = "catalog")]
pub mod catalog;
mod db;
#[cfg(feature = "eventstore")]
pub mod eventstore;
mod integrity;
mod writer;

pub use db::{Database, Durability, Error, Options, ReadPool};
pub use writer::{Writer, WriterStats};
