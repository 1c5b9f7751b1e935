//! An append whose answer is lost after the control plane stored it: the caller sees an
//! unknown outcome (`Storage { retryable: true }`), retries with the same ids, and the events
//! are stored once, the retry answering what the first append wrote.
#![cfg(feature = "eventstore")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flotilla_core::StreamId;
use flotilla_eventstore::{Error, EventStore, ExpectedVersion, NewEvent, ReadStream};
use flotilla_platform::eventstore::PlatformEventStore;
use flotilla_platform::{ConnectOptions, ControlPlane};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A proxy to `upstream` that cuts off the answers of the first `lose` POSTs: each reaches the
/// server, and the client's connection is closed as soon as the server starts answering.
async fn lossy_proxy(upstream: SocketAddr, lose: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("its address");
    let lose = Arc::new(AtomicUsize::new(lose));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(relay(client, upstream, lose.clone()));
        }
    });
    addr
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, lose: Arc<AtomicUsize>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let mut first = vec![0u8; 64 * 1024];
    let Ok(n) = client.read(&mut first).await else {
        return;
    };
    let post = first[..n].starts_with(b"POST ");
    let take = |left: usize| left.checked_sub(1);
    if post
        && lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
            .is_ok()
    {
        // Forward the rest of the request (the body may come in a later read) until the
        // server starts answering.
        let _ = server.write_all(&first[..n]).await;
        let (mut from_client, _) = client.split();
        let (mut from_server, mut to_server) = server.split();
        let mut answer = [0u8; 1];
        tokio::select! {
            _ = tokio::io::copy(&mut from_client, &mut to_server) => {}
            _ = from_server.read(&mut answer) => {}
        }
        return; // both sockets close: the answer is lost
    }
    if server.write_all(&first[..n]).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_answer_was_lost_is_stored_once_when_retried_with_the_same_ids() {
    let plane = common::ControlPlane::start().await;
    let proxy = lossy_proxy(plane.addr, 1).await;
    let connect = |url: String| async move {
        let options = ConnectOptions {
            timeout: Duration::from_secs(5),
            ..ConnectOptions::new(url)
        };
        let plane = ControlPlane::new(options).expect("a valid URL");
        PlatformEventStore::connect(plane).await.expect("connects")
    };
    let store = connect(format!("http://{proxy}")).await;
    let direct = connect(plane.url()).await;
    let stream = StreamId::new("pay-1").expect("a valid id");
    let events: Vec<_> = (0..3)
        .map(|i| NewEvent::new("Charged", json!({ "i": i })))
        .collect();

    let e = store
        .append(&stream, ExpectedVersion::NoStream, events.clone())
        .await
        .expect_err("the answer was cut off");
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
    assert_eq!(
        direct.stream_version(&stream).await.expect("reads"),
        Some(3),
        "the control plane stored the append whose answer was lost"
    );

    let retried = store
        .append(&stream, ExpectedVersion::NoStream, events.clone())
        .await
        .expect("a retry with the same ids succeeds although the stream now exists");
    assert_eq!((retried.first_version, retried.last_version), (1, 3));
    let stored = direct
        .read_stream(&stream, ReadStream::all())
        .await
        .expect("reads");
    let sent: Vec<_> = events.iter().map(|e| e.id).collect();
    let kept: Vec<_> = stored.iter().map(|e| e.id).collect();
    assert_eq!(kept, sent, "stored once");
}
