//! Snapshot + tail equals full replay, over random histories.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

use super::sid;
use crate::{EventStore, ExpectedVersion as Ev, NewEvent, ReadStream, Snapshot};

const CASES: usize = 24;

/// A small ledger: the state the histories fold into.
fn evolve(mut state: Vec<i64>, e: &Value) -> Vec<i64> {
    match (e["op"].as_str(), e["v"].as_i64()) {
        (Some("push"), Some(v)) => state.push(v),
        (Some("add"), Some(v)) => {
            if let Some(last) = state.last_mut() {
                *last += v;
            }
        }
        (Some("pop"), _) => {
            state.pop();
        }
        _ => {}
    }
    state
}

fn op() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-50i64..50).prop_map(|v| json!({ "op": "push", "v": v })),
        (-9i64..9).prop_map(|v| json!({ "op": "add", "v": v })),
        Just(json!({ "op": "pop" })),
    ]
}

type History = (Vec<Value>, usize, prop::sample::Index);

/// Generated up front: a value tree is not `Send`, so it must not live across an await.
fn histories() -> Vec<History> {
    let mut runner = TestRunner::deterministic();
    let history = (
        prop::collection::vec(op(), 1..60),
        1usize..8,
        any::<prop::sample::Index>(),
    );
    (0..CASES)
        .map(|_| {
            history
                .new_tree(&mut runner)
                .expect("the strategy always generates a value")
                .current()
        })
        .collect()
}

/// For random histories appended in random batches, and a snapshot at a random version, the
/// snapshot's state folded with the events after it equals folding the whole stream.
pub async fn snapshot_plus_tail_equals_full_replay(store: Arc<dyn EventStore>) {
    for (case, (ops, batch, snap_at)) in histories().into_iter().enumerate() {
        let s = sid(&format!("ledger-{case}"));
        for chunk in ops.chunks(batch) {
            let evs = chunk
                .iter()
                .map(|d| NewEvent::new("Op", d.clone()))
                .collect();
            store.append(&s, Ev::Any, evs).await.unwrap();
        }
        let full = store.read_stream(&s, ReadStream::all()).await.unwrap();
        let replay = full.iter().fold(Vec::new(), |st, e| evolve(st, &e.data));
        let k = snap_at.index(full.len()) + 1;
        let at_k = full[..k]
            .iter()
            .fold(Vec::new(), |st, e| evolve(st, &e.data));
        let snapshot = Snapshot {
            stream: s.clone(),
            version: k as u64,
            state: json!(at_k),
        };
        store.save_snapshot(snapshot).await.unwrap();

        let loaded = store
            .load_snapshot(&s)
            .await
            .unwrap()
            .expect("snapshot just saved");
        let state: Vec<i64> = serde_json::from_value(loaded.state).unwrap();
        let tail = store.read_stream(&s, ReadStream::forward(loaded.version + 1, usize::MAX));
        let folded = tail
            .await
            .unwrap()
            .iter()
            .fold(state, |st, e| evolve(st, &e.data));
        assert_eq!(folded, replay, "case {case}: ops {ops:?}, snapshot at {k}");
    }
}
