//! The client's connection pool against a real server: which connections calls use.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::header;
use axum::routing::get;
use flotilla_client::ServiceClient;
use support::discovery;

/// Serves `/keep` and `/close` (which asks for the connection to be closed after the answer),
/// recording the client's address of every request: one address per connection.
async fn upstream(peers: Arc<Mutex<Vec<SocketAddr>>>) -> SocketAddr {
    let (keep, close) = (peers.clone(), peers);
    let app = Router::new()
        .route(
            "/keep",
            get(
                move |ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                    keep.lock().unwrap().push(peer);
                    "kept"
                },
            ),
        )
        .route(
            "/close",
            get(
                move |ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                    close.lock().unwrap().push(peer);
                    ([(header::CONNECTION, "close")], "closed")
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    addr
}

#[tokio::test]
async fn calls_reuse_a_connection_and_replace_one_the_server_closed() {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let up = upstream(peers.clone()).await;
    let client = ServiceClient::new(discovery(&[("up", vec![up])]));
    let call = |path: &'static str| {
        let client = client.clone();
        async move { client.service("up").get(path).send().await.unwrap().text() }
    };
    for _ in 0..3 {
        assert_eq!(call("/keep").await, "kept");
    }
    // The server closes the connection after each of these; the next call gets a new one.
    assert_eq!(call("/close").await, "closed");
    assert_eq!(call("/close").await, "closed");
    assert_eq!(call("/keep").await, "kept");
    assert_eq!(call("/keep").await, "kept");
    let peers = peers.lock().unwrap().clone();
    assert_eq!(peers.len(), 7);
    // Three keeps and the first close on one connection, the second close on the next, the
    // last two keeps on a third.
    assert!(peers[..4].iter().all(|p| *p == peers[0]), "{peers:?}");
    assert_ne!(peers[4], peers[0], "{peers:?}");
    assert_ne!(peers[5], peers[4], "{peers:?}");
    assert_eq!(peers[6], peers[5], "{peers:?}");
}
