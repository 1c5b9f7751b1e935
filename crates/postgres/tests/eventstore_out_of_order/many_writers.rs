//! Many writers, long and short transactions interleaved, and readers running throughout: no
//! reader ever skips an event.
//!
//! Short writers append (1 to 3 events) and commit at once, in a loop. Long writers open a
//! transaction, append to two streams in it, and hold it open until at least ten short appends
//! have committed after it **and** the `read_all` reader has finished two more rounds, so every
//! long transaction has committed positions above its own that a careless reader would pass;
//! then one in three rolls back, the others commit. Every other long transaction takes its
//! transaction id first (a write of the caller's own) and appends only after ten more short
//! commits: its id, and so its positions, are older than events already committed and read.
//!
//! Readers run the whole time, on every filter: a `read_all` loop and a subscription over
//! `$all`, a `read_all` loop by event type (the long transactions' type), and a subscription
//! by category (the long transactions' first stream) through a second store on the same
//! schema, whose head moves only by its own polling, as in another process. At the end, what
//! each saw must equal the final full read of `$all` (filtered the same way), which must hold
//! exactly the committed appends, each stream's versions contiguous and in `$all` order.
//!
//! Checked to fail without the gap protection: with the read bound in
//! `src/eventstore/sql.rs` (`BOUND`) replaced by `9223372036854775807`, the reader passes the
//! open long transactions and this test fails on "the reader saw every event".

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use flotilla_eventstore::{
    AppendResult, EventStore, ExpectedVersion, Filter, NewEvent, ReadAll, RecordedEvent,
    subscribe_all,
};
use flotilla_testkit::{Backend, backend};
use serde_json::json;
use tokio::sync::watch;

use super::{drop_schema, open, open_at, sid};

const SHORT_WRITERS: usize = 12;
const LONG_WRITERS: usize = 4;
const LONG_ROUNDS: usize = 3;
/// Short commits that must land after a long transaction's appends before it ends.
const COMMITS_PAST: u64 = 10;
/// Reader rounds that must finish after those commits before it ends.
const ROUNDS_PAST: u64 = 2;
/// The long transactions' event type, read by the type-filtered reader.
const LONG_TYPE: &str = "L";
/// The category of the long transactions' first stream, followed by the category subscriber.
const LONG_CATEGORY: &str = "long";
/// Guard against a hang; a pass takes seconds.
const PATIENCE: Duration = Duration::from_secs(120);

/// What the writers and the reader tell each other.
#[derive(Clone)]
struct Progress {
    commits: Arc<watch::Sender<u64>>,
    rounds: Arc<watch::Sender<u64>>,
    long_done: Arc<watch::Sender<bool>>,
}

/// Waits until `counter` has grown by `more` from now.
async fn grown_by(counter: &watch::Sender<u64>, more: u64) {
    let mut rx = counter.subscribe();
    let n = *rx.borrow_and_update() + more;
    tokio::time::timeout(PATIENCE, rx.wait_for(|v| *v >= n))
        .await
        .expect("progress within the patience")
        .unwrap();
}

/// Every position an append committed (positions of one transaction are contiguous).
fn positions(r: &AppendResult, events: u64) -> impl Iterator<Item = u64> {
    (r.last_position + 1 - events)..=r.last_position
}

fn batch(event_type: &str, n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent::new(event_type, json!(i)))
        .collect()
}

async fn short_writer(store: Arc<dyn EventStore>, w: usize, p: Progress) -> Vec<u64> {
    let mut committed = Vec::new();
    let mut j = 0;
    while j < 5 || !*p.long_done.borrow() {
        let n = 1 + j % 3;
        let stream = sid(&format!("short-{w}"));
        let r = store
            .append(&stream, ExpectedVersion::Any, batch("E", n))
            .await;
        committed.extend(positions(&r.unwrap(), n as u64));
        p.commits.send_modify(|c| *c += 1);
        j += 1;
    }
    committed
}

async fn long_writer(
    store: Arc<flotilla_postgres::eventstore::PgEventStore>,
    w: usize,
    p: Progress,
) -> (Vec<u64>, Vec<u64>) {
    let (mut committed, mut rolled_back) = (Vec::new(), Vec::new());
    for round in 0..LONG_ROUNDS {
        let mut client = store.pool().get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        if (w + round).is_multiple_of(2) {
            // The id first, the appends only after younger transactions committed.
            tx.batch_execute("SELECT pg_current_xact_id()")
                .await
                .unwrap();
            grown_by(&p.commits, COMMITS_PAST).await;
        }
        let mut mine = Vec::new();
        for stream in [format!("{LONG_CATEGORY}-{w}"), format!("other-{w}")] {
            let r = store
                .append_in(
                    &tx,
                    &sid(&stream),
                    ExpectedVersion::Any,
                    &batch(LONG_TYPE, 2),
                )
                .await
                .unwrap();
            mine.extend(positions(&r, 2));
        }
        grown_by(&p.commits, COMMITS_PAST).await;
        grown_by(&p.rounds, ROUNDS_PAST).await;
        if (w + round).is_multiple_of(3) {
            tx.rollback().await.unwrap();
            rolled_back.extend(mine);
        } else {
            tx.commit().await.unwrap();
            store.announce();
            committed.extend(mine);
        }
    }
    (committed, rolled_back)
}

/// `read_all` by `filter` in small pages until it has passed `last`; the unfiltered reader
/// counts its rounds in `rounds`.
async fn reader(
    store: Arc<dyn EventStore>,
    filter: Filter,
    rounds: Option<Arc<watch::Sender<u64>>>,
    last: watch::Receiver<u64>,
) -> Vec<u64> {
    let (mut seen, mut after) = (Vec::new(), 0);
    loop {
        let read = ReadAll::after(after, 7).filtered(filter.clone());
        for e in store.read_all(read).await.unwrap() {
            assert!(e.position > after, "positions only grow");
            assert!(filter.matches(&e), "{filter:?} passed {e:?}");
            seen.push(e.position);
            after = e.position;
        }
        if let Some(rounds) = &rounds {
            rounds.send_modify(|r| *r += 1);
        }
        if *last.borrow() > 0 && after >= *last.borrow() {
            return seen;
        }
        if rounds.is_none() {
            // The filtered reader needs no hot loop to find a skip.
            tokio::task::yield_now().await;
        }
    }
}

async fn subscriber(
    store: Arc<dyn EventStore>,
    filter: Filter,
    mut last: watch::Receiver<u64>,
) -> Vec<u64> {
    let mut sub = subscribe_all(store, 0, filter);
    let mut seen: Vec<u64> = Vec::new();
    loop {
        let target = *last.borrow_and_update();
        if target > 0 && seen.last().is_some_and(|s| *s >= target) {
            return seen;
        }
        tokio::select! {
            e = sub.next() => seen.push(e.unwrap().unwrap().position),
            _ = last.changed() => {}
        }
    }
}

async fn everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let (mut all, mut after) = (Vec::new(), 0);
    loop {
        let page = store.read_all(ReadAll::after(after, 500)).await.unwrap();
        let Some(tail) = page.last() else {
            return all;
        };
        after = tail.position;
        all.extend(page);
    }
}

/// The positions of the events `filter` passes.
fn passing(all: &[RecordedEvent], filter: &Filter) -> Vec<u64> {
    all.iter()
        .filter(|e| filter.matches(e))
        .map(|e| e.position)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_and_short_transactions_never_make_a_reader_skip() {
    let Some((store, schema)) = open().await else {
        return;
    };
    let url = backend(Backend::Postgres, "postgres out-of-order commits").unwrap();
    let elsewhere: Arc<dyn EventStore> = open_at(&url, &schema).await;
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let p = Progress {
        commits: Arc::new(watch::Sender::new(0)),
        rounds: Arc::new(watch::Sender::new(0)),
        long_done: Arc::new(watch::Sender::new(false)),
    };
    let by_type = Filter::EventType(LONG_TYPE.into());
    let by_category = Filter::Category(LONG_CATEGORY.into());
    let (last_tx, last) = watch::channel(0u64);
    let (last_type_tx, last_type) = watch::channel(0u64);
    let (last_category_tx, last_category) = watch::channel(0u64);
    let rounds = Some(p.rounds.clone());
    let read = tokio::spawn(reader(dyn_store.clone(), Filter::All, rounds, last.clone()));
    let sub = tokio::spawn(subscriber(dyn_store.clone(), Filter::All, last));
    let read_type = tokio::spawn(reader(dyn_store.clone(), by_type.clone(), None, last_type));
    let sub_category = tokio::spawn(subscriber(elsewhere, by_category.clone(), last_category));
    let shorts: Vec<_> = (0..SHORT_WRITERS)
        .map(|w| tokio::spawn(short_writer(dyn_store.clone(), w, p.clone())))
        .collect();
    let longs: Vec<_> = (0..LONG_WRITERS)
        .map(|w| tokio::spawn(long_writer(store.clone(), w, p.clone())))
        .collect();

    let (mut committed, mut rolled_back) = (BTreeSet::new(), BTreeSet::new());
    for l in longs {
        let (c, r) = tokio::time::timeout(PATIENCE, l).await.unwrap().unwrap();
        committed.extend(c);
        rolled_back.extend(r);
    }
    p.long_done.send_replace(true);
    for s in shorts {
        committed.extend(s.await.unwrap());
    }

    // Nothing writes any more: this read is final.
    let all = everything(&*store).await;
    let all_positions = passing(&all, &Filter::All);
    let of_type = passing(&all, &by_type);
    let of_category = passing(&all, &by_category);
    last_tx.send_replace(*all_positions.last().unwrap());
    last_type_tx.send_replace(*of_type.last().unwrap());
    last_category_tx.send_replace(*of_category.last().unwrap());
    let expected: Vec<u64> = committed.iter().copied().collect();
    assert_eq!(
        all_positions, expected,
        "$all holds exactly the committed appends"
    );
    assert!(rolled_back.iter().all(|r| !committed.contains(r)));
    assert!(
        !rolled_back.is_empty(),
        "some long transactions rolled back"
    );
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &all {
        versions
            .entry(e.stream.as_str())
            .or_default()
            .push(e.version);
    }
    for (stream, v) in &versions {
        let contiguous: Vec<u64> = (1..=v.len() as u64).collect();
        assert_eq!(v, &contiguous, "{stream}: versions 1..=n in $all order");
    }

    // The readers end once they read past their last event, skipped or not.
    let read = tokio::time::timeout(PATIENCE, read).await.unwrap().unwrap();
    assert_eq!(read, all_positions, "the reader saw every event, in order");
    let read_type = tokio::time::timeout(PATIENCE, read_type)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read_type, of_type,
        "the reader by type saw every such event"
    );
    // A subscription that skipped its last event waits for it forever.
    let sub = tokio::time::timeout(PATIENCE, sub)
        .await
        .expect("the subscription reaches the last event")
        .unwrap();
    assert_eq!(
        sub, all_positions,
        "the subscription saw every event, in order"
    );
    let sub_category = tokio::time::timeout(PATIENCE, sub_category)
        .await
        .expect("the subscription by category reaches the category's last event")
        .unwrap();
    assert_eq!(
        sub_category, of_category,
        "the subscription by category, through another store, saw every such event"
    );
    drop_schema(&store, &schema).await;
}
