//! A deadline set by the first hop reaches the second, and a third call made after it passed is
//! never sent.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use flotilla_client::{Deadline, Error, ServiceClient};
use support::{discovery, serve};

#[tokio::test(start_paused = true)]
async fn deadline_travels_through_hops_and_stops_the_late_call() {
    let third_calls = Arc::new(AtomicUsize::new(0));
    let t = third_calls.clone();
    let third = serve(Router::new().route(
        "/",
        get(move || async move {
            t.fetch_add(1, Ordering::SeqCst);
            "late"
        }),
    ))
    .await;

    // The second hop reports the budget it received, works past it, then tries the third hop.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Result<(), Error>)>();
    let onward = ServiceClient::new(discovery(&[("third", vec![third])]));
    let second = serve(Router::new().route(
        "/",
        get(move |headers: HeaderMap| {
            let (tx, onward) = (tx.clone(), onward.clone());
            // Spawned so the work outlives the first hop giving up and closing the connection.
            let arrived = Deadline::from_headers(&headers).unwrap();
            let work = tokio::spawn(async move {
                let budget: u64 = headers["x-flotilla-deadline-ms"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(budget + 10)).await;
                let result = onward
                    .service("third")
                    .get("/")
                    .propagate(&headers)
                    .deadline(arrived)
                    .send()
                    .await
                    .map(|_| ());
                tx.send((budget, result)).unwrap();
            });
            async move {
                let _ = work.await;
                "done"
            }
        }),
    ))
    .await;

    let first = ServiceClient::new(discovery(&[("second", vec![second])]));
    let err = first
        .service("second")
        .get("/")
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::DeadlineExceeded | Error::Timeout(_)),
        "{err}"
    );

    let report = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
    let (budget, onward_result) = report.expect("the second hop reports").unwrap();
    assert!(budget > 0 && budget <= 500, "second hop got {budget} ms");
    assert!(
        matches!(onward_result, Err(Error::DeadlineExceeded)),
        "{onward_result:?}"
    );
    assert_eq!(
        third_calls.load(Ordering::SeqCst),
        0,
        "the third call was never sent"
    );
}
