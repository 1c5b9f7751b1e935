//! Catch-up then live, and checkpoint resume.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use super::{events, sid};
use crate::{
    EventHandler, EventStore, ExpectedVersion as Ev, Filter, NewEvent, ReadAll, RecordedEvent,
    run_persistent, subscribe_all,
};

const BEFORE: usize = 300;
const DURING: usize = 300;

/// A subscription started over 300 stored events receives them and the 300 appended while it
/// catches up, in position order, each exactly once.
pub async fn catch_up_then_live_has_no_gap_or_duplicate(store: Arc<dyn EventStore>) {
    for i in 0..BEFORE / 10 {
        store
            .append(&sid(&format!("s-{i}")), Ev::Any, events("Before", 10))
            .await
            .unwrap();
    }
    let mut sub = subscribe_all(store.clone(), 0, Filter::All);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..DURING {
                let e = NewEvent::new("During", json!({ "i": i }));
                store
                    .append(&sid(&format!("t-{}", i % 7)), Ev::Any, vec![e])
                    .await
                    .unwrap();
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut got: Vec<RecordedEvent> = Vec::new();
    while got.len() < BEFORE + DURING {
        got.push(sub.next().await.expect("subscription ended early").unwrap());
    }
    writer.await.unwrap();
    let stored = store.read_all(ReadAll::after(0, 10_000)).await.unwrap();
    let ids = |es: &[RecordedEvent]| es.iter().map(|e| e.position).collect::<Vec<_>>();
    assert_eq!(
        ids(&got),
        ids(&stored),
        "every stored event, once, in position order"
    );
    let during: Vec<_> = got.iter().filter(|e| e.event_type == "During").collect();
    assert!(
        during
            .windows(2)
            .all(|w| w[0].data["i"].as_u64() < w[1].data["i"].as_u64())
    );
    let late = NewEvent::new("Late", json!(null));
    let r = store
        .append(&sid("late-1"), Ev::Any, vec![late])
        .await
        .unwrap();
    let next = sub.next().await.expect("subscription is live").unwrap();
    assert_eq!(
        next.position, r.last_position,
        "live events follow without a gap"
    );
}

#[derive(Debug, Default)]
struct Recorder {
    seen: Vec<u64>,
    stop_after: usize,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(
        &mut self,
        e: &RecordedEvent,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.seen.push(e.position);
        if self.seen.len() == self.stop_after
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
        Ok(())
    }
}

async fn run_until(store: &Arc<dyn EventStore>, stop_after: usize) -> (Vec<u64>, u64) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut r = Recorder {
        stop_after,
        done: Some(tx),
        ..Recorder::default()
    };
    let stop = async {
        let _ = rx.await;
    };
    let filter = Filter::Category("ck".into());
    let cp = run_persistent(store.clone(), "projector-a", filter, &mut r, stop)
        .await
        .unwrap();
    (r.seen, cp)
}

/// A persistent subscriber stopped midway resumes after its checkpoint: nothing it handled is
/// redelivered, nothing after it is skipped.
pub async fn checkpoint_resume(store: Arc<dyn EventStore>) {
    store
        .append(&sid("ck-1"), Ev::Any, events("E", 10))
        .await
        .unwrap();
    store
        .append(&sid("other-1"), Ev::Any, events("E", 5))
        .await
        .unwrap();
    store
        .append(&sid("ck-2"), Ev::Any, events("E", 10))
        .await
        .unwrap();
    let (first, cp) = run_until(&store, 12).await;
    assert!(first.len() >= 12);
    assert_eq!(Some(cp), first.last().copied());
    assert_eq!(
        store.load_checkpoint("projector-a").await.unwrap(),
        Some(cp)
    );
    store
        .append(&sid("ck-3"), Ev::Any, events("E", 5))
        .await
        .unwrap();
    let remaining = 25 - first.len();
    let (second, _) = run_until(&store, remaining).await;
    let mut all = first.clone();
    all.extend(&second);
    let expected: Vec<u64> = store
        .read_all(ReadAll::after(0, 100).filtered(Filter::Category("ck".into())))
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(
        all, expected,
        "resumed after the checkpoint, no gap, no redelivery"
    );
    assert_eq!(store.load_checkpoint("never-ran").await.unwrap(), None);
    store.save_checkpoint("a-first", 1).await.unwrap();
    let listed = store.list_checkpoints().await.unwrap();
    let last = *all.last().unwrap();
    assert_eq!(
        listed,
        vec![("a-first".to_owned(), 1), ("projector-a".to_owned(), last)]
    );
}
