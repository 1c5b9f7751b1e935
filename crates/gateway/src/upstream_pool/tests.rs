//! The pool against a raw upstream that counts the connections it accepts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Pool;
use crate::config::ServerOptions;
use crate::problem::Body;

/// What the upstream does with each connection after answering a request.
#[derive(Clone, Copy)]
enum After {
    /// Waits for the next request.
    KeepAlive,
    /// Closes the connection this long after answering (no `Connection: close` said).
    CloseIn(Duration),
}

struct Upstream {
    uri: Uri,
    accepted: Arc<AtomicUsize>,
}

/// An upstream answering every request with `body_len` bytes.
async fn upstream(body_len: usize, after: After) -> Upstream {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/x", l.local_addr().unwrap())
        .parse()
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(answer(s, body_len, after));
        }
    });
    Upstream { uri, accepted }
}

async fn answer(mut s: TcpStream, body_len: usize, after: After) {
    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n");
    let body = vec![b'a'; body_len];
    while read_head(&mut s).await {
        if s.write_all(head.as_bytes()).await.is_err() || s.write_all(&body).await.is_err() {
            return;
        }
        if let After::CloseIn(d) = after {
            tokio::time::sleep(d).await;
            return;
        }
    }
}

/// Reads one bodyless request's head; false at the end of the connection.
async fn read_head(s: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    true
}

fn pool() -> Pool {
    crate::tls::plain_client(&ServerOptions::default())
}

fn get(uri: &Uri) -> Request<Body> {
    let body = Empty::new().map_err(|n| match n {}).boxed();
    Request::get(uri.clone()).body(body).unwrap()
}

async fn read_all(pool: &Pool, uri: &Uri) -> usize {
    let resp = pool.request(get(uri)).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap().to_bytes().len()
}

#[tokio::test]
async fn a_connection_is_reused_after_a_fully_read_body() {
    let up = upstream(5, After::KeepAlive).await;
    let pool = pool();
    assert_eq!(read_all(&pool, &up.uri).await, 5);
    assert_eq!(pool.idle_count(&up.uri), 1, "back in the pool once read");
    // As hyper's server reads it: up to the announced length, never polled for the end.
    let mut body = pool.request(get(&up.uri)).await.unwrap().into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.data_ref().map(|d| d.len()), Some(5));
    assert!(body.is_end_stream());
    drop(body);
    assert_eq!(pool.idle_count(&up.uri), 1, "back with its last frame");
    assert_eq!(read_all(&pool, &up.uri).await, 5);
    assert_eq!(read_all(&pool, &up.uri).await, 5);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_dropped_mid_stream_does_not_return_its_connection() {
    // Larger than the socket buffers: the upstream is still writing when the body is dropped.
    let up = upstream(8 << 20, After::KeepAlive).await;
    let pool = pool();
    let resp = pool.request(get(&up.uri)).await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
    drop(body);
    assert_eq!(pool.idle_count(&up.uri), 0);
    assert_eq!(read_all(&pool, &up.uri).await, 8 << 20);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2, "a fresh connection");
    assert_eq!(pool.idle_count(&up.uri), 1);
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_not_used() {
    let up = upstream(5, After::CloseIn(Duration::from_millis(50))).await;
    let pool = pool();
    assert_eq!(read_all(&pool, &up.uri).await, 5);
    assert_eq!(
        pool.idle_count(&up.uri),
        1,
        "kept: nothing said it would close"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(read_all(&pool, &up.uri).await, 5);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2, "a fresh connection");
}

#[tokio::test]
async fn idle_connections_are_bounded_per_instance() {
    let up = upstream(5, After::KeepAlive).await;
    let server = ServerOptions {
        upstream_pool_idle_per_host: 1,
        ..ServerOptions::default()
    };
    let pool = crate::tls::plain_client(&server);
    let (a, b) = (
        pool.request(get(&up.uri)).await.unwrap(),
        pool.request(get(&up.uri)).await.unwrap(),
    );
    let (a, b) = (a.into_body().collect(), b.into_body().collect());
    let (a, b) = tokio::join!(a, b);
    assert_eq!(
        (a.unwrap().to_bytes().len(), b.unwrap().to_bytes().len()),
        (5, 5)
    );
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(pool.idle_count(&up.uri), 1);
}
