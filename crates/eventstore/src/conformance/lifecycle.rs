//! Snapshots, soft deletion and truncation.

use std::sync::Arc;

use serde_json::json;

use super::{events, sid};
use crate::{Error, EventStore, ExpectedVersion as Ev, Filter, ReadAll, ReadStream, Snapshot};

/// Snapshots are stored per stream, replaced by newer ones, and refused beyond the version.
pub async fn snapshots_replace_and_validate(store: Arc<dyn EventStore>) {
    let s = sid("acct-1");
    assert_eq!(store.load_snapshot(&s).await.unwrap(), None);
    store
        .append(&s, Ev::NoStream, events("Deposited", 5))
        .await
        .unwrap();
    let snap = |version, total| Snapshot {
        stream: s.clone(),
        version,
        state: json!({ "total": total }),
    };
    store.save_snapshot(snap(3, 30)).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(snap(3, 30)));
    store.save_snapshot(snap(5, 50)).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(snap(5, 50)));
    let e = store.save_snapshot(snap(6, 60)).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    let other = Snapshot {
        stream: sid("acct-2"),
        version: 1,
        state: json!(null),
    };
    let e = store.save_snapshot(other).await.unwrap_err();
    assert!(
        matches!(e, Error::InvalidInput(_)),
        "no snapshot of an unwritten stream"
    );
}

/// Soft delete hides the stream from stream reads and appends but keeps its events in `$all`;
/// truncation then removes them for good.
pub async fn delete_then_truncate(store: Arc<dyn EventStore>) {
    let s = sid("doc-1");
    store
        .append(&s, Ev::NoStream, events("Edited", 4))
        .await
        .unwrap();
    store
        .append(&sid("doc-2"), Ev::NoStream, events("Edited", 2))
        .await
        .unwrap();
    store
        .save_snapshot(Snapshot {
            stream: s.clone(),
            version: 4,
            state: json!(4),
        })
        .await
        .unwrap();
    let e = store.delete_stream(&s, Ev::Exact(3)).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::WrongExpectedVersion {
                actual: Some(4),
                ..
            }
        ),
        "{e:?}"
    );
    store.delete_stream(&s, Ev::Exact(4)).await.unwrap();
    store.delete_stream(&s, Ev::Any).await.unwrap();
    let deleted = |e: Error| matches!(e, Error::StreamDeleted { .. });
    assert!(deleted(
        store.read_stream(&s, ReadStream::all()).await.unwrap_err()
    ));
    assert!(deleted(store.stream_version(&s).await.unwrap_err()));
    assert!(deleted(
        store
            .append(&s, Ev::Any, events("Edited", 1))
            .await
            .unwrap_err()
    ));
    assert!(deleted(store.load_snapshot(&s).await.unwrap_err()));
    let docs = || ReadAll::after(0, 100).filtered(Filter::Category("doc".into()));
    assert_eq!(
        store.read_all(docs()).await.unwrap().len(),
        6,
        "history stays in $all"
    );
    assert_eq!(store.truncate_stream(&s, u64::MAX).await.unwrap(), 4);
    let left = store.read_all(docs()).await.unwrap();
    assert_eq!(left.len(), 2, "truncation removes the events from $all");
    assert!(left.iter().all(|e| e.stream.as_str() == "doc-2"));
    assert!(deleted(
        store.read_stream(&s, ReadStream::all()).await.unwrap_err()
    ));
}

/// Truncating a live stream removes old events; its version and next appends are unchanged.
pub async fn truncate_keeps_version(store: Arc<dyn EventStore>) {
    let s = sid("log-1");
    let r = store
        .append(&s, Ev::NoStream, events("Line", 5))
        .await
        .unwrap();
    assert_eq!(store.truncate_stream(&s, 3).await.unwrap(), 2);
    let read = store.read_stream(&s, ReadStream::all()).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(store.stream_version(&s).await.unwrap(), Some(5));
    let next = store
        .append(&s, Ev::Exact(5), events("Line", 1))
        .await
        .unwrap();
    assert_eq!(next.last_version, 6);
    assert!(
        next.last_position > r.last_position,
        "positions are never reused"
    );
    assert_eq!(store.truncate_stream(&sid("log-2"), 3).await.unwrap(), 0);
}
