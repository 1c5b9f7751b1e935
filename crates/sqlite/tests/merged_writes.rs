//! Publishes and appends gathered into one batch run together (one savepoint, statements
//! prepared once): each still gets the answer it would get alone. Every scenario queues its
//! writes behind a write that holds the writer, so they all land in one batch, and runs once
//! with merging and once without.
#![cfg(all(feature = "bus", feature = "eventstore"))]
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Waker};

use flotilla_bus::{Backend, GroupName, GroupSpec, Outgoing, PublishOutcome};
use flotilla_core::{CloudEvent, StreamId, TopicName, TopicPattern};
use flotilla_eventstore::{Error as StoreError, EventStore, ExpectedVersion, NewEvent, ReadAll};
use flotilla_sqlite::bus::{BusOptions, SqliteBus};
use flotilla_sqlite::eventstore::SqliteEventStore;
use flotilla_sqlite::{Database, Options};
use serde_json::json;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn open(merge: bool) -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path().join("m.db"));
    options.merge_writes = merge;
    (dir, Database::open(options).unwrap())
}

/// Runs `writes` in one batch of the writer: holds the writer with a write of its own, polls
/// each of `writes` once (which queues it), lets the writer go, and awaits them. Answers their
/// results and how many transactions ran for them.
async fn in_one_batch<T>(db: &Database, mut writes: Vec<Boxed<'_, T>>) -> (Vec<T>, u64) {
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let (release, held) = mpsc::channel::<()>();
    let w = db.writer().clone();
    let holder = tokio::spawn(async move {
        w.write(move |_| {
            let _ = started_tx.send(());
            held.recv().unwrap();
            Ok::<_, flotilla_sqlite::Error>(())
        })
        .await
        .unwrap();
    });
    started.await.unwrap();
    let before = db.writer().stats();
    let mut cx = Context::from_waker(Waker::noop());
    for w in &mut writes {
        assert!(w.as_mut().poll(&mut cx).is_pending(), "answered while held");
    }
    release.send(()).unwrap();
    holder.await.unwrap();
    let mut out = Vec::with_capacity(writes.len());
    for w in writes {
        out.push(w.await);
    }
    let batches = db.writer().stats().batches - before.batches;
    (out, batches)
}

fn event(id: &str) -> Outgoing {
    let mut e = CloudEvent::new("/test", "t");
    e.id = id.into();
    Outgoing::new(TopicName::new("t.x").unwrap(), e)
}

async fn publish_scenario(merge: bool) -> (Vec<Vec<PublishOutcome>>, u64, i64) {
    let (_dir, db) = open(merge);
    let bus = SqliteBus::open(db.clone(), BusOptions::default()).unwrap();
    let spec = GroupSpec {
        name: GroupName::new("g").unwrap(),
        pattern: TopicPattern::new("t.>").unwrap(),
    };
    bus.declare_group(&spec).await.unwrap();
    let mut writes: Vec<Boxed<'_, _>> = Vec::new();
    // Every id twice, from different publishes of the same batch.
    for _ in 0..2 {
        for i in 0..10 {
            writes.push(Box::pin(bus.publish(vec![event(&format!("e{i}"))])));
        }
    }
    // One publish repeating an id inside itself and repeating one of the ids above.
    writes.push(Box::pin(bus.publish(vec![
        event("f1"),
        event("f1"),
        event("e3"),
        event("f2"),
    ])));
    let (answers, batches) = in_one_batch(&db, writes).await;
    let answers = answers.into_iter().map(Result::unwrap).collect();
    let owed = bus.pending_deliveries().await.unwrap().len() as i64;
    (answers, batches, owed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_in_one_batch_answer_duplicates_as_they_would_alone() {
    use PublishOutcome::{Duplicate, Stored};
    let mut expected = vec![vec![Stored]; 10];
    expected.extend(vec![vec![Duplicate]; 10]);
    expected.push(vec![Stored, Duplicate, Duplicate, Stored]);
    for merge in [true, false] {
        let (answers, batches, owed) = publish_scenario(merge).await;
        assert_eq!(answers, expected, "merge_writes = {merge}");
        assert_eq!(
            batches, 1,
            "one transaction held them all (merge_writes = {merge})"
        );
        assert_eq!(
            owed, 12,
            "one delivery per stored event (merge_writes = {merge})"
        );
    }
}

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

fn new_event(n: u64) -> NewEvent {
    NewEvent::new("Happened", json!({ "n": n }))
}

/// What an append answered, without positions (they differ with nothing else).
#[derive(Debug, PartialEq)]
enum Answer {
    Versions(u64, u64),
    WrongVersion(Option<u64>),
    Idempotency,
    Other(String),
}

fn answer(r: Result<flotilla_eventstore::AppendResult, StoreError>) -> Answer {
    match r {
        Ok(a) => Answer::Versions(a.first_version, a.last_version),
        Err(StoreError::WrongExpectedVersion { actual, .. }) => Answer::WrongVersion(actual),
        Err(StoreError::IdempotencyViolation { .. }) => Answer::Idempotency,
        Err(e) => Answer::Other(e.to_string()),
    }
}

async fn append_scenario(merge: bool) -> (Vec<Answer>, u64, usize) {
    let (_dir, db) = open(merge);
    let store = SqliteEventStore::open(db.clone(), None).await.unwrap();
    let (a, b, c) = (sid("a-1"), sid("b-1"), sid("c-1"));
    let retried = new_event(100);
    let mut writes: Vec<Boxed<'_, _>> = Vec::new();
    // Three appends expecting an empty stream: the first wins, the others see it.
    for n in 0..3 {
        writes.push(store.append(&a, ExpectedVersion::NoStream, vec![new_event(n)]));
    }
    // Appends that follow each other within the batch.
    writes.push(store.append(&b, ExpectedVersion::Any, vec![new_event(1), new_event(2)]));
    writes.push(store.append(&b, ExpectedVersion::Exact(2), vec![new_event(3)]));
    // A retried append answers what the first stored; one mixing it with a new event is
    // refused and writes nothing.
    writes.push(store.append(&c, ExpectedVersion::Any, vec![retried.clone()]));
    writes.push(store.append(&c, ExpectedVersion::Any, vec![retried.clone()]));
    writes.push(store.append(&c, ExpectedVersion::Any, vec![retried, new_event(7)]));
    writes.push(store.append(&c, ExpectedVersion::Exact(1), vec![new_event(8)]));
    let (answers, batches) = in_one_batch(&db, writes).await;
    let stored = store.read_all(ReadAll::after(0, 100)).await.unwrap().len();
    (answers.into_iter().map(answer).collect(), batches, stored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_in_one_batch_answer_as_they_would_alone() {
    let expected = vec![
        Answer::Versions(1, 1),
        Answer::WrongVersion(Some(1)),
        Answer::WrongVersion(Some(1)),
        Answer::Versions(1, 2),
        Answer::Versions(3, 3),
        Answer::Versions(1, 1),
        Answer::Versions(1, 1),
        Answer::Idempotency,
        Answer::Versions(2, 2),
    ];
    for merge in [true, false] {
        let (answers, batches, stored) = append_scenario(merge).await;
        assert_eq!(answers, expected, "merge_writes = {merge}");
        assert_eq!(
            batches, 1,
            "one transaction held them all (merge_writes = {merge})"
        );
        assert_eq!(stored, 6, "merge_writes = {merge}");
    }
}
