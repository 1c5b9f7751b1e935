//! A failed connection is reported without the password of its URL.

use flotilla_nats::{NatsBackend, Options};

#[tokio::test]
async fn a_failed_connect_never_shows_the_password() {
    // A port nothing listens on: bind one, learn it, and free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(1);
    let opts = Options {
        url: format!("nats://app:wrong-Pa55word@127.0.0.1:{port}"),
        ..Options::default()
    };
    let Err(e) = NatsBackend::connect(opts).await else {
        panic!("nothing listens on port {port}");
    };
    let msg = e.to_string();
    assert!(!msg.contains("wrong-Pa55word"), "{msg}");
    assert!(msg.contains("app:***@"), "{msg}");
}
