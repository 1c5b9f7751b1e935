//! Writers racing on one stream.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use super::sid;
use crate::{Error, EventStore, ExpectedVersion as Ev, NewEvent, ReadStream};

const WRITERS: usize = 8;
const PER_WRITER: usize = 10;

/// Eight writers each append ten events to one stream, each append expecting the version it
/// last read: every version is won by exactly one append and versions stay contiguous.
pub async fn concurrent_writers_get_contiguous_versions(store: Arc<dyn EventStore>) {
    let s = sid("race-1");
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, s) = (store.clone(), s.clone());
            tokio::spawn(async move {
                let mut won = Vec::new();
                while won.len() < PER_WRITER {
                    let v = store.stream_version(&s).await.unwrap();
                    let e = NewEvent::new("Wrote", json!({ "writer": w }));
                    match store.append(&s, Ev::Exact(v.unwrap_or(0)), vec![e]).await {
                        Ok(r) => won.push(r.last_version),
                        Err(Error::WrongExpectedVersion { .. }) => {}
                        Err(other) => panic!("writer {w}: unexpected {other:?}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut winners = HashSet::new();
    for t in tasks {
        for v in t.await.unwrap() {
            assert!(winners.insert(v), "version {v} was won by two appends");
        }
    }
    let total = (WRITERS * PER_WRITER) as u64;
    assert_eq!(winners, (1..=total).collect::<HashSet<_>>());
    let read = store.read_stream(&s, ReadStream::all()).await.unwrap();
    let versions: Vec<u64> = read.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (1..=total).collect::<Vec<_>>(),
        "contiguous versions"
    );
    for w in 0..WRITERS {
        let n = read.iter().filter(|e| e.data["writer"] == json!(w)).count();
        assert_eq!(
            n, PER_WRITER,
            "writer {w} has every acknowledged event stored once"
        );
    }
}
