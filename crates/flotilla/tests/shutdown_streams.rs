//! Streaming responses (server-sent events) at shutdown: ended when the listener closes if
//! they watch `closing_token()`, and at the shutdown deadline otherwise, so a follower always
//! sees its stream end and the service always stops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use flotilla::testing::{TestService, test_config};
use flotilla::{CancellationToken, Microservice, MicroserviceBuilder};
use futures_util::StreamExt as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Generous bound: a stuck shutdown fails the test with a message instead of hanging it.
const LIMIT: Duration = Duration::from_secs(60);

/// An endless SSE stream, ended early when `end` fires.
fn endless(end: CancellationToken) -> Router {
    let handler = move || {
        let end = end.clone();
        async move {
            let ticks = futures_util::stream::unfold(0u64, |n| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((
                    Ok::<_, Infallible>(Event::default().data(n.to_string())),
                    n + 1,
                ))
            });
            Sse::new(ticks.take_until(end.cancelled_owned()))
        }
    };
    Router::new().route("/events", get(handler))
}

/// Opens the stream and waits for its first event.
async fn follow(svc: &TestService) -> BufReader<TcpStream> {
    let mut conn = TcpStream::connect(svc.addr).await.unwrap();
    let req = "GET /events HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n";
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !line.starts_with("data:") {
        line.clear();
        assert!(
            reader.read_line(&mut line).await.unwrap() > 0,
            "stream closed early"
        );
    }
    reader
}

/// Reads until the server closes the connection; true if the chunked body was terminated.
async fn read_to_end(mut reader: BufReader<TcpStream>) -> bool {
    let mut text = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).await.unwrap_or(0) > 0 {
        text.push_str(&line);
        line.clear();
    }
    text.contains("\r\n0\r\n\r\n")
}

async fn stop_within_limit(svc: TestService, reader: BufReader<TcpStream>) {
    let stopping = tokio::spawn(svc.stop());
    let ended = tokio::time::timeout(LIMIT, read_to_end(reader)).await;
    assert_eq!(ended.ok(), Some(true), "the stream must end cleanly");
    let stopped = tokio::time::timeout(LIMIT, stopping).await;
    stopped.expect("the service must stop").unwrap().unwrap();
}

fn builder() -> MicroserviceBuilder {
    Microservice::builder("events").unwrap()
}

#[tokio::test]
async fn an_open_stream_is_ended_at_the_shutdown_deadline() {
    let config = flotilla::ServiceConfig {
        shutdown_deadline: Duration::from_millis(300),
        ..test_config()
    };
    // The route ignores shutdown: only the deadline can end it.
    let svc = TestService::start_with(
        builder()
            .routes(endless(CancellationToken::new()))
            .config(config),
    )
    .await;
    let reader = follow(&svc).await;
    stop_within_limit(svc, reader).await;
}

#[tokio::test]
async fn a_stream_watching_the_closing_token_ends_when_the_listener_closes() {
    // A deadline far beyond the limit: the stream must end long before it.
    let config = flotilla::ServiceConfig {
        shutdown_deadline: Duration::from_secs(3600),
        ..test_config()
    };
    let b = builder();
    let routes = endless(b.closing_token());
    let svc = TestService::start_with(b.routes(routes).config(config)).await;
    let reader = follow(&svc).await;
    stop_within_limit(svc, reader).await;
}
