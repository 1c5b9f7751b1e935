//! The platform event store when the control plane misbehaves: killed and restarted while
//! appends run, down when the service connects, stalled without answering.
#![cfg(feature = "eventstore")]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotilla_core::StreamId;
use flotilla_eventstore::{
    AppendResult, Error, EventStore, ExpectedVersion, NewEvent, ReadAll, ReadStream,
};
use flotilla_platform::eventstore::PlatformEventStore;
use flotilla_platform::{ConnectOptions, ControlPlane};
use serde_json::json;
use uuid::Uuid;

const WRITERS: usize = 4;
const BATCHES: usize = 40;
/// Bounds every wait on the platform coming back, so a broken reconnect fails the test.
const PATIENCE: Duration = Duration::from_secs(30);

async fn connect(url: String, timeout: Duration) -> PlatformEventStore {
    let options = ConnectOptions {
        timeout,
        ..ConnectOptions::new(url)
    };
    let plane = ControlPlane::new(options).expect("a valid URL");
    PlatformEventStore::connect(plane)
        .await
        .expect("connect never waits for the control plane")
}

fn sid(s: &str) -> StreamId {
    StreamId::new(s).expect("a valid stream id")
}

/// Appends `events`, retrying with the same ids while the outcome is unknown; counts retries.
async fn append_until_done(
    store: &PlatformEventStore,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
    retries: &AtomicUsize,
) -> AppendResult {
    let started = Instant::now();
    loop {
        match store.append(stream, expected, events.to_vec()).await {
            Ok(r) => return r,
            Err(Error::Storage {
                retryable: true, ..
            }) if started.elapsed() < PATIENCE => {
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("append to {stream} failed for good: {e:?}"),
        }
    }
}

/// One writer: `BATCHES` appends of two events, each expecting the version the last left.
async fn writer(
    store: PlatformEventStore,
    n: usize,
    done: Arc<AtomicUsize>,
    retries: Arc<AtomicUsize>,
) -> Vec<Uuid> {
    let stream = sid(&format!("w-{n}"));
    let mut ids = Vec::new();
    for b in 0..BATCHES {
        let events = vec![
            NewEvent::new("Tick", json!({ "b": b, "i": 0 })),
            NewEvent::new("Tick", json!({ "b": b, "i": 1 })),
        ];
        let expected = ExpectedVersion::Exact(2 * b as u64);
        let r = append_until_done(&store, &stream, expected, &events, &retries).await;
        assert_eq!(
            r.last_version,
            2 * b as u64 + 2,
            "{stream}: contiguous versions"
        );
        ids.extend(events.iter().map(|e| e.id));
        done.fetch_add(1, Ordering::Relaxed);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_retried_with_the_same_ids_across_a_restart_are_stored_exactly_once() {
    let plane = common::ControlPlane::start().await;
    let store = connect(plane.url(), Duration::from_secs(2)).await;
    let done = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|n| tokio::spawn(writer(store.clone(), n, done.clone(), retries.clone())))
        .collect();
    // Kill it once a quarter of the appends went through, while the rest are running.
    while done.load(Ordering::Relaxed) < WRITERS * BATCHES / 4 {
        tokio::task::yield_now().await;
    }
    let (dir, addr) = plane.kill().await;
    let _plane = common::ControlPlane::start_at(&dir, addr).await;
    let mut sent = Vec::new();
    for w in writers {
        sent.push(w.await.expect("a writer finished"));
    }
    let retried = retries.load(Ordering::Relaxed);
    eprintln!("{retried} append attempts failed as unknown outcomes across the restart");
    assert!(retried > 0, "the restart interrupted some appends");
    for (n, ids) in sent.iter().enumerate() {
        let stored = store
            .read_stream(&sid(&format!("w-{n}")), ReadStream::all())
            .await
            .expect("the stream reads");
        let stored_ids: Vec<Uuid> = stored.iter().map(|e| e.id).collect();
        assert_eq!(&stored_ids, ids, "w-{n}: every event once, in order");
    }
    let all = store
        .read_all(ReadAll::after(0, 10_000))
        .await
        .expect("$all reads");
    let unique: HashSet<Uuid> = all.iter().map(|e| e.id).collect();
    assert_eq!(
        (all.len(), unique.len()),
        (WRITERS * BATCHES * 2, WRITERS * BATCHES * 2)
    );
    // The head follower reconnected: it reaches the last position after the restart.
    let last = all.last().expect("events").position;
    let mut head = store.head();
    tokio::time::timeout(PATIENCE, head.wait_for(|h| *h >= last))
        .await
        .expect("the head catches up after the restart")
        .expect("the follower runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_connected_while_the_control_plane_is_down_works_once_it_starts() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port");
    let store = connect(format!("http://{addr}"), Duration::from_secs(2)).await;
    let stream = sid("late-1");
    let events = vec![NewEvent::new("Started", json!({}))];
    let e = store
        .append(&stream, ExpectedVersion::NoStream, events.clone())
        .await
        .expect_err("nothing listens yet");
    assert!(
        matches!(
            e,
            Error::Storage {
                retryable: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(*store.head().borrow(), 0);

    let dir = tempfile::tempdir().expect("a directory");
    let _plane = common::ControlPlane::start_at(dir.path(), addr).await;
    let retries = AtomicUsize::new(0);
    let r = append_until_done(
        &store,
        &stream,
        ExpectedVersion::NoStream,
        &events,
        &retries,
    )
    .await;
    assert_eq!(r.last_version, 1);
    let mut head = store.head();
    tokio::time::timeout(PATIENCE, head.wait_for(|h| *h >= r.last_position))
        .await
        .expect("the head follower connects when the platform appears")
        .expect("the follower runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_stalled_control_plane_fail_within_the_deadline() {
    // Accepts connections and never answers on them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let deadline = Duration::from_millis(300);
    let store = connect(format!("http://{addr}"), deadline).await;
    let started = Instant::now();
    let e = store
        .append(
            &sid("slow-1"),
            ExpectedVersion::Any,
            vec![NewEvent::new("A", json!(1))],
        )
        .await
        .expect_err("no answer comes");
    let took = started.elapsed();
    assert!(
        matches!(
            e,
            Error::Storage {
                retryable: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        took >= deadline && took < deadline * 5,
        "failed after {took:?}"
    );
    let started = Instant::now();
    let e = store
        .stream_version(&sid("slow-1"))
        .await
        .expect_err("no answer comes");
    assert!(
        matches!(
            e,
            Error::Storage {
                retryable: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        started.elapsed() < deadline * 5,
        "failed after {:?}",
        started.elapsed()
    );
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_clone_closes_the_head_stream() {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    // A deadline far beyond the test's patience: only the drop can end the request.
    let store = connect(format!("http://{addr}"), PATIENCE * 4).await;
    let clone = store.clone();
    // The follower opens its stream at once; nothing else calls.
    let (mut socket, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("the head follower connects")
        .expect("accepted");
    drop(store);
    let mut buf = [0u8; 4096];
    let n = socket.read(&mut buf).await.expect("the request arrives");
    let request = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        request.starts_with("GET /api/v1/streams/$head "),
        "{request}"
    );
    drop(clone);
    let closed = async { while socket.read(&mut buf).await.is_ok_and(|n| n > 0) {} };
    tokio::time::timeout(PATIENCE, closed)
        .await
        .expect("the connection closes once no clone is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_an_error_naming_the_setting_that_is_not_worth_retrying() {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::UNAUTHORIZED,
            "this write needs a bearer token",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let store = connect(format!("http://{addr}"), Duration::from_secs(2)).await;
    let e = store
        .append(
            &sid("a-1"),
            ExpectedVersion::Any,
            vec![NewEvent::new("A", json!(1))],
        )
        .await
        .expect_err("refused");
    assert!(
        matches!(
            e,
            Error::Storage {
                retryable: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("platform.token"), "{e}");
    server.abort();
}
