//! Expected-version rules, idempotent re-append, batch validation.

use std::sync::Arc;

use serde_json::json;

use super::{events, sid};
use crate::{Error, EventStore, ExpectedVersion as Ev, NewEvent, ReadStream};

fn actual_of(e: Error) -> Option<u64> {
    match e {
        Error::WrongExpectedVersion { actual, .. } => actual,
        other => panic!("expected a version conflict, got {other:?}"),
    }
}

/// NoStream / StreamExists / Exact / Any, with the actual version in every conflict.
pub async fn expected_version_rules(store: Arc<dyn EventStore>) {
    let s = sid("order-1");
    let r = store
        .append(&s, Ev::NoStream, events("A", 2))
        .await
        .unwrap();
    assert_eq!((r.first_version, r.last_version), (1, 2));
    let e = store
        .append(&s, Ev::NoStream, events("A", 1))
        .await
        .unwrap_err();
    assert_eq!(
        actual_of(e),
        Some(2),
        "NoStream on a written stream conflicts"
    );
    let e = store
        .append(&s, Ev::Exact(1), events("A", 1))
        .await
        .unwrap_err();
    assert_eq!(actual_of(e), Some(2), "a stale exact version conflicts");
    let r = store
        .append(&s, Ev::Exact(2), events("A", 1))
        .await
        .unwrap();
    assert_eq!(r.last_version, 3);
    store
        .append(&s, Ev::StreamExists, events("A", 1))
        .await
        .unwrap();
    let r = store.append(&s, Ev::Any, events("A", 1)).await.unwrap();
    assert_eq!(r.last_version, 5);
    let empty = sid("order-2");
    let e = store
        .append(&empty, Ev::StreamExists, events("A", 1))
        .await
        .unwrap_err();
    assert_eq!(
        actual_of(e),
        None,
        "StreamExists on an empty stream conflicts"
    );
    let e = store
        .append(&empty, Ev::Exact(3), events("A", 1))
        .await
        .unwrap_err();
    assert_eq!(actual_of(e), None);
    store
        .append(&empty, Ev::Exact(0), events("A", 1))
        .await
        .unwrap();
    assert_eq!(store.stream_version(&s).await.unwrap(), Some(5));
    assert_eq!(store.stream_version(&sid("order-3")).await.unwrap(), None);
    let e = store
        .append(&s, Ev::Exact(2), events("A", 1))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), flotilla_core::ErrorKind::Conflict);
}

/// The same ids and content succeed without duplicates; the same ids with other content fail.
pub async fn idempotent_reappend(store: Arc<dyn EventStore>) {
    let s = sid("cart-1");
    let batch = events("ItemAdded", 3);
    let first = store.append(&s, Ev::NoStream, batch.clone()).await.unwrap();
    let again = store.append(&s, Ev::NoStream, batch.clone()).await.unwrap();
    assert_eq!(
        first, again,
        "a retried append answers what the first one wrote"
    );
    let read = store.read_stream(&s, ReadStream::all()).await.unwrap();
    assert_eq!(read.len(), 3, "a retried append writes nothing");

    let mut changed = batch[0].clone();
    changed.data = json!({"other": true});
    let e = store.append(&s, Ev::Any, vec![changed]).await.unwrap_err();
    assert!(
        matches!(e, Error::IdempotencyViolation { id, .. } if id == batch[0].id),
        "{e:?}"
    );
    let mixed = vec![batch[2].clone(), NewEvent::new("ItemAdded", json!(9))];
    let e = store.append(&s, Ev::Any, mixed).await.unwrap_err();
    assert!(matches!(e, Error::IdempotencyViolation { .. }), "{e:?}");
    let e = store
        .append(&sid("cart-2"), Ev::Any, vec![batch[1].clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::IdempotencyViolation { .. }),
        "an id is unique store-wide"
    );
    assert_eq!(
        store
            .read_stream(&s, ReadStream::all())
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(store.stream_version(&sid("cart-2")).await.unwrap(), None);
}

/// Empty batches and ids repeated inside one batch are refused as invalid input.
pub async fn invalid_batches_are_refused(store: Arc<dyn EventStore>) {
    let s = sid("x-1");
    let e = store.append(&s, Ev::Any, vec![]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    let one = NewEvent::new("A", json!(1));
    let e = store
        .append(&s, Ev::Any, vec![one.clone(), one])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    let e = store
        .read_stream(&s, ReadStream::forward(1, 0))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    assert_eq!(store.stream_version(&s).await.unwrap(), None);
}
