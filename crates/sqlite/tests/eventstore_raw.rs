//! Raw reads return the same events as the typed reads, with data and metadata left as the
//! JSON text stored, under the same filters, order and errors.
#![cfg(feature = "eventstore")]

use flotilla_core::StreamId;
use flotilla_eventstore::{
    Error, EventStore, ExpectedVersion, Filter, Metadata, NewEvent, ReadAll, ReadStream,
};
use flotilla_sqlite::eventstore::SqliteEventStore;
use flotilla_sqlite::{Database, Options};
use serde_json::json;

async fn store() -> (tempfile::TempDir, SqliteEventStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = Database::open(Options::new(dir.path().join("es.db"))).expect("database opens");
    let store = SqliteEventStore::open(db, None).await.expect("schema");
    (dir, store)
}

fn sid(s: &str) -> StreamId {
    StreamId::new(s).expect("valid stream id")
}

async fn seed(store: &SqliteEventStore) {
    let mut meta = Metadata {
        correlation_id: Some("c-1".into()),
        ..Metadata::default()
    };
    meta.extra.insert("tenant".into(), json!({ "id": 7 }));
    let events = vec![
        NewEvent::new(
            "Placed",
            json!({ "total": 12.5, "lines": [1, 2], "note": "é \"q\"" }),
        )
        .with_metadata(meta),
        NewEvent::new("Paid", json!(null)),
    ];
    store
        .append(&sid("order-1"), ExpectedVersion::NoStream, events)
        .await
        .expect("append order-1");
    store
        .append(
            &sid("user-9"),
            ExpectedVersion::Any,
            vec![NewEvent::new("Placed", json!([]))],
        )
        .await
        .expect("append user-9");
}

#[tokio::test]
async fn raw_reads_decode_to_exactly_what_typed_reads_return() {
    let (_dir, store) = store().await;
    seed(&store).await;
    for filter in [
        Filter::All,
        Filter::Category("order".into()),
        Filter::EventType("Placed".into()),
    ] {
        let read = ReadAll::after(0, 100).filtered(filter.clone());
        let typed = store.read_all(read.clone()).await.expect("typed read");
        let raw = store.read_all_raw(read).await.expect("raw read");
        let decoded: Vec<_> = raw.iter().map(|e| e.decode().expect("decodes")).collect();
        assert_eq!(decoded, typed, "{filter:?}");
    }
    let typed = store
        .read_stream(&sid("order-1"), ReadStream::backward(10))
        .await
        .expect("typed stream read");
    let raw = store
        .read_stream_raw(&sid("order-1"), ReadStream::backward(10))
        .await
        .expect("raw stream read");
    assert_eq!(raw.len(), 2);
    assert_eq!(raw[0].decode().expect("decodes"), typed[0]);
    let text = r#"{"lines":[1,2],"note":"é \"q\"","total":12.5}"#;
    assert_eq!(raw[1].data.get(), text);
    assert_eq!(raw[1].data.to_raw_value().expect("JSON").get(), text);
    let embedded = serde_json::to_string(&json!({ "data": raw[1].data })).expect("serialises");
    assert_eq!(
        embedded,
        format!(r#"{{"data":{text}}}"#),
        "embedded as JSON, not as a string"
    );
    let total: serde_json::Value = raw[1].data.decode().expect("decodes");
    assert_eq!(total["total"], json!(12.5));
}

#[tokio::test]
async fn raw_reads_keep_the_limits_and_refusals_of_typed_reads() {
    let (_dir, store) = store().await;
    seed(&store).await;
    let page = store
        .read_all_raw(ReadAll::after(1, 1))
        .await
        .expect("page");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].version, 2);
    assert!(matches!(
        store.read_all_raw(ReadAll::after(0, 0)).await,
        Err(Error::InvalidInput(_))
    ));
    store
        .delete_stream(&sid("order-1"), ExpectedVersion::Any)
        .await
        .expect("delete");
    assert!(matches!(
        store
            .read_stream_raw(&sid("order-1"), ReadStream::forward(1, 10))
            .await,
        Err(Error::StreamDeleted { .. })
    ));
}

#[tokio::test]
async fn text_that_is_not_json_is_reported_when_decoded_or_serialised() {
    let (dir, store) = store().await;
    seed(&store).await;
    let c = rusqlite::Connection::open(dir.path().join("es.db")).expect("second connection");
    c.execute("UPDATE es_events SET data = '{\"cut' WHERE version = 2", [])
        .expect("damage one payload");
    let raw = store
        .read_all_raw(ReadAll::after(0, 10))
        .await
        .expect("raw read");
    let bad = raw
        .iter()
        .find(|e| e.data.get() == "{\"cut")
        .expect("the damaged event");
    assert!(bad.decode().is_err());
    assert!(bad.data.decode::<serde_json::Value>().is_err());
    assert!(bad.data.to_raw_value().is_err());
    assert!(serde_json::to_string(&bad.data).is_err());
    assert!(
        store.read_all(ReadAll::after(0, 10)).await.is_err(),
        "typed reads refuse it too"
    );
}
