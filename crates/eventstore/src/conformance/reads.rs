//! Reading a stream both ways and `$all` by position, category and type.

use std::sync::Arc;

use super::{events, sid};
use crate::{Direction, EventStore, ExpectedVersion as Ev, Filter, ReadAll, ReadStream};

fn versions(es: &[crate::RecordedEvent]) -> Vec<u64> {
    es.iter().map(|e| e.version).collect()
}

/// Forward from a version with a limit; backward from the end or from a version.
pub async fn read_stream_both_directions(store: Arc<dyn EventStore>) {
    let s = sid("order-7");
    let written = events("Step", 10);
    store
        .append(&s, Ev::NoStream, written.clone())
        .await
        .unwrap();
    let all = store.read_stream(&s, ReadStream::all()).await.unwrap();
    assert_eq!(versions(&all), (1..=10).collect::<Vec<_>>());
    assert_eq!(all[3].id, written[3].id);
    assert_eq!(all[3].data, written[3].data);
    assert_eq!(all[3].stream, s);
    let fwd = store
        .read_stream(&s, ReadStream::forward(4, 3))
        .await
        .unwrap();
    assert_eq!(versions(&fwd), vec![4, 5, 6]);
    let back = store
        .read_stream(&s, ReadStream::backward(3))
        .await
        .unwrap();
    assert_eq!(versions(&back), vec![10, 9, 8]);
    let back_from = ReadStream {
        from: 5,
        limit: 10,
        direction: Direction::Backward,
    };
    let back = store.read_stream(&s, back_from).await.unwrap();
    assert_eq!(versions(&back), vec![5, 4, 3, 2, 1]);
    let past_end = store
        .read_stream(&s, ReadStream::forward(11, 5))
        .await
        .unwrap();
    assert!(past_end.is_empty());
    let none = store
        .read_stream(&sid("order-8"), ReadStream::all())
        .await
        .unwrap();
    assert!(none.is_empty(), "an unwritten stream reads as empty");
}

/// Streams are listed in id order, paged by `after`, deleted ones marked.
pub async fn list_streams_in_id_order(store: Arc<dyn EventStore>) {
    for s in ["b-1", "a-1", "c-1", "a-2"] {
        store
            .append(&sid(s), Ev::Any, events("E", 2))
            .await
            .unwrap();
    }
    store.delete_stream(&sid("c-1"), Ev::Any).await.unwrap();
    let first = store.list_streams(None, 3).await.unwrap();
    let names: Vec<&str> = first.iter().map(|i| i.stream.as_str()).collect();
    assert_eq!(names, vec!["a-1", "a-2", "b-1"]);
    assert_eq!((first[0].version, first[0].deleted), (Some(2), false));
    let rest = store
        .list_streams(Some(&first[2].stream), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!((rest[0].stream.as_str(), rest[0].deleted), ("c-1", true));
    assert!(
        store
            .list_streams(Some(&sid("c-1")), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// `$all` is in position order across streams; paging by `after`; category and type filters.
pub async fn read_all_by_position_category_and_type(store: Arc<dyn EventStore>) {
    for i in 0..3 {
        store
            .append(
                &sid(&format!("order-{i}")),
                Ev::Any,
                events("OrderPlaced", 2),
            )
            .await
            .unwrap();
        store
            .append(&sid(&format!("user-{i}")), Ev::Any, events("UserJoined", 1))
            .await
            .unwrap();
    }
    let all = store.read_all(ReadAll::after(0, 100)).await.unwrap();
    assert_eq!(all.len(), 9);
    assert!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "position order"
    );
    assert_eq!(all[0].stream.as_str(), "order-0");
    let page1 = store.read_all(ReadAll::after(0, 4)).await.unwrap();
    let page2 = store
        .read_all(ReadAll::after(page1[3].position, 100))
        .await
        .unwrap();
    assert_eq!(page1.len() + page2.len(), 9);
    assert_eq!(
        page2[0].position, all[4].position,
        "paging by `after` skips nothing"
    );
    let orders = ReadAll::after(0, 100).filtered(Filter::Category("order".into()));
    let orders = store.read_all(orders).await.unwrap();
    assert_eq!(orders.len(), 6);
    assert!(orders.iter().all(|e| e.stream.category() == "order"));
    let joined = ReadAll::after(0, 2).filtered(Filter::EventType("UserJoined".into()));
    let joined = store.read_all(joined).await.unwrap();
    assert_eq!(joined.len(), 2, "the limit applies after the filter");
    assert!(joined.iter().all(|e| e.event_type == "UserJoined"));
    let after_last = store
        .read_all(ReadAll::after(all[8].position, 10))
        .await
        .unwrap();
    assert!(after_last.is_empty());
    // A store served over the network learns its head from a stream of its own, so the head
    // may trail an append's answer; the contract is that it gets there and never goes back.
    let last = all[8].position;
    let mut head = store.head();
    let covered = tokio::time::timeout(HEAD_WAIT, head.wait_for(|h| *h >= last)).await;
    assert!(
        matches!(covered, Ok(Ok(_))),
        "head covers every appended event"
    );
}

/// Generous: this bounds a hang, it does not time anything.
const HEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
