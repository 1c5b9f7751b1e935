//! Event-store writes as writer jobs that let the writer see corruption.
//!
//! The store's errors are the event-store contract's, which carry SQLite's message as text;
//! the writer needs the SQLite error itself to notice corruption and stop acknowledging
//! writes. [`rows::db`](super::rows::db) notes corruption on the writer thread as it maps an
//! error, and a failed job hands that note to the writer in its error's source chain.

use std::cell::RefCell;

use flotilla_eventstore::Error;
use rusqlite::Connection;

thread_local! {
    /// Corruption SQLite reported while a job ran on this thread (the writer's), if any.
    static CORRUPTION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Notes that SQLite reported corruption to the job running on this thread.
pub(super) fn note_corruption(message: String) {
    CORRUPTION.with(|c| *c.borrow_mut() = Some(message));
}

/// A failed job: the store's error, and the corruption behind it when SQLite reported one.
#[derive(Debug)]
pub(super) struct JobError {
    pub(super) error: Error,
    corruption: Option<Box<crate::Error>>,
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for JobError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.corruption
            .as_ref()
            .map(|c| &**c as &(dyn std::error::Error + 'static))
    }
}

impl From<crate::Error> for JobError {
    fn from(e: crate::Error) -> Self {
        Self {
            error: e.into(),
            corruption: None,
        }
    }
}

/// `f` as a writer job whose failure carries any corruption SQLite reported during it.
pub(super) fn job<T>(
    f: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
) -> impl FnOnce(&Connection) -> Result<T, JobError> + Send + 'static {
    move |c| {
        forget_corruption();
        f(c).map_err(failed)
    }
}

/// `error` as the failure of a job that SQLite did not fail (a refusal by the contract).
pub(super) fn refused(error: Error) -> JobError {
    JobError {
        error,
        corruption: None,
    }
}

/// Forgets any corruption noted before a job begins.
pub(super) fn forget_corruption() {
    CORRUPTION.with(|n| n.borrow_mut().take());
}

/// `error` as a failed job's, with the corruption noted since [`forget_corruption`], if any.
pub(super) fn failed(error: Error) -> JobError {
    JobError {
        error,
        corruption: CORRUPTION
            .with(|n| n.borrow_mut().take())
            .map(|m| Box::new(crate::Error::Corrupt(m))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use flotilla_core::StreamId;
    use flotilla_eventstore::{EventStore, ExpectedVersion, NewEvent, ReadAll};

    use super::super::{SqliteEventStore, rows::db};
    use crate::{Database, Options};

    /// Before, a corruption first met inside an append was answered as a storage error and
    /// the writer went on acknowledging the next appends onto the damaged file.
    #[tokio::test]
    async fn corruption_met_inside_an_append_stops_every_later_write() {
        let dir = tempfile::tempdir().unwrap();
        let database = Database::open(Options::new(dir.path().join("es.db"))).unwrap();
        let store = SqliteEventStore::open(database, None).await.unwrap();
        // What SQLite answers a statement that reads a damaged page mid-append.
        let malformed = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some("database disk image is malformed".into()),
        );
        let hit = store.write(move |_| Err::<(), _>(db(malformed))).await;
        assert!(hit.is_err());

        let stream = StreamId::new("order-1").unwrap();
        let event = NewEvent::new("OrderPlaced", serde_json::json!({ "n": 1 }));
        let later = store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await;
        let refusal = later.unwrap_err().to_string();
        assert!(refusal.contains("restore"), "{refusal}");
        assert!(
            store
                .read_all(ReadAll::after(0, 10))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
