//! Push subscriptions against a real HTTP receiver on 127.0.0.1:0.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use flotilla_broker::{Broker, Options, PushOptions};
use flotilla_bus::{Backend, Backoff, Bus, DeliveryPolicy, DlqQuery, FailureReason, MemoryBackend};
use flotilla_core::CloudEvent;
use http::StatusCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A receiver answering `first` to the first request and `then` to every later one, and
/// reporting the ids it was sent.
async fn receiver(
    first: StatusCode,
    then: StatusCode,
) -> (String, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/hook",
        post(move |body: String| {
            let (tx, calls) = (tx.clone(), calls.clone());
            async move {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                let _ = tx.send(v["id"].as_str().unwrap().to_owned());
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    first
                } else {
                    then
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), rx)
}

fn push(url: String) -> PushOptions {
    PushOptions {
        group: "hooks".into(),
        pattern: "orders.*".into(),
        url: Some(url),
        service: None,
        path: "/events".into(),
        filter: Default::default(),
        concurrency: 2,
        timeout_ms: 5_000,
        wait_for_instance_ms: 60_000,
        policy: DeliveryPolicy {
            max_deliveries: 3,
            backoff: Backoff::List {
                delays: vec![Duration::from_millis(20)],
            },
        },
    }
}

async fn start(
    url: String,
) -> (
    MemoryBackend,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let mem = MemoryBackend::new();
    let options = Options {
        push: vec![push(url)],
        ..Options::default()
    };
    let broker = Broker::new(options, Arc::new(mem.clone())).unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { broker.run(token).await.unwrap() });
    // The group exists once the subscription started.
    while mem.groups().await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (mem, shutdown, task)
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_again_until_it_accepts() {
    let (url, mut got) = receiver(StatusCode::SERVICE_UNAVAILABLE, StatusCode::NO_CONTENT).await;
    let (mem, shutdown, task) = start(url).await;
    let bus = Bus::new(Arc::new(mem.clone()));
    let e = CloudEvent::new("/shop", "orders.created");
    bus.publish(e.clone()).await.unwrap();
    assert_eq!(got.recv().await.unwrap(), e.id, "first attempt (503)");
    assert_eq!(got.recv().await.unwrap(), e.id, "retried and accepted");
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(
        mem.groups().await.unwrap()[0].pending,
        0,
        "acked after the 204"
    );
}

#[tokio::test]
async fn a_receiver_refusing_with_4xx_dead_letters_the_event_at_once() {
    let (url, mut got) = receiver(
        StatusCode::UNPROCESSABLE_ENTITY,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let (mem, shutdown, task) = start(url).await;
    let bus = Bus::new(Arc::new(mem.clone()));
    bus.publish(CloudEvent::new("/shop", "orders.created"))
        .await
        .unwrap();
    got.recv().await.unwrap();
    shutdown.cancel();
    task.await.unwrap();
    let dlq = mem.dlq_list(&DlqQuery::default()).await.unwrap();
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        (dlq[0].reason, dlq[0].attempts),
        (FailureReason::Rejected, 1)
    );
    assert!(dlq[0].last_error.contains("422"), "{}", dlq[0].last_error);
}

#[tokio::test]
async fn a_push_url_that_is_not_http_is_refused_naming_it() {
    let options = Options {
        push: vec![push("ftp://x/hook".into())],
        ..Options::default()
    };
    let broker = Broker::new(options, Arc::new(MemoryBackend::new())).unwrap();
    let err = broker.run(CancellationToken::new()).await.unwrap_err();
    assert!(err.to_string().contains("ftp://x/hook"), "{err}");
}

#[tokio::test]
async fn a_push_to_a_service_goes_to_an_instance_found_through_discovery() {
    let (url, mut got) = receiver(StatusCode::NO_CONTENT, StatusCode::NO_CONTENT).await;
    let port: u16 = url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook")
        .parse()
        .unwrap();
    let name = flotilla_core::ServiceName::new("mailer").unwrap();
    let discovery = flotilla_discovery::StaticDiscovery::new();
    let instance = flotilla_core::ServiceInstance::new(name.clone(), "127.0.0.1", port);
    discovery.set_passing(&name, vec![instance]);
    let mem = MemoryBackend::new();
    let target = PushOptions {
        url: None,
        service: Some("mailer".into()),
        path: "/hook".into(),
        ..push(String::new())
    };
    let options = Options {
        push: vec![target],
        ..Options::default()
    };
    let broker = Broker::new(options, Arc::new(mem.clone()))
        .unwrap()
        .with_discovery(Arc::new(discovery));
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { broker.run(token).await.unwrap() });
    while mem.groups().await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let e = CloudEvent::new("/shop", "orders.created");
    Bus::new(Arc::new(mem.clone()))
        .publish(e.clone())
        .await
        .unwrap();
    assert_eq!(got.recv().await.unwrap(), e.id);
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(mem.groups().await.unwrap()[0].pending, 0);
}

/// A broker pushing group `group` to the `mailer` service found through `discovery`, with one
/// delivery allowed per event: any attempt spent without a receiver dead-letters the event.
async fn start_to_service(
    discovery: flotilla_discovery::StaticDiscovery,
    group: &str,
    wait_ms: u64,
) -> (
    MemoryBackend,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let mem = MemoryBackend::new();
    let target = PushOptions {
        group: group.into(),
        url: None,
        service: Some("mailer".into()),
        path: "/hook".into(),
        wait_for_instance_ms: wait_ms,
        policy: DeliveryPolicy {
            max_deliveries: 1,
            backoff: Backoff::List {
                delays: vec![Duration::from_millis(20)],
            },
        },
        ..push(String::new())
    };
    let options = Options {
        push: vec![target],
        ..Options::default()
    };
    let broker = Broker::new(options, Arc::new(mem.clone()))
        .unwrap()
        .with_discovery(Arc::new(discovery));
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { broker.run(token).await.unwrap() });
    while mem.groups().await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (mem, shutdown, task)
}

/// Waits until the log holds a line with every one of `parts`.
async fn logged(parts: &[&str]) {
    let logs = flotilla_testkit::logs::CapturedLogs::global();
    let seen = || {
        logs.contents()
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    };
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while !seen() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(waited.await.is_ok(), "never logged: {parts:?}");
}

#[tokio::test]
async fn a_push_waits_for_an_instance_that_is_restarting_without_spending_an_attempt() {
    flotilla_testkit::logs::CapturedLogs::global();
    let (url, mut got) = receiver(StatusCode::NO_CONTENT, StatusCode::NO_CONTENT).await;
    let port: u16 = url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook")
        .parse()
        .unwrap();
    let name = flotilla_core::ServiceName::new("mailer").unwrap();
    let discovery = flotilla_discovery::StaticDiscovery::new();
    discovery.set_passing(&name, vec![]); // known, and restarting: no instance right now
    let (mem, shutdown, task) = start_to_service(discovery.clone(), "restart", 60_000).await;
    let e = CloudEvent::new("/shop", "orders.created");
    Bus::new(Arc::new(mem.clone()))
        .publish(e.clone())
        .await
        .unwrap();
    logged(&["no routable instance to push to", "mailer"]).await;
    let instance = flotilla_core::ServiceInstance::new(name.clone(), "127.0.0.1", port);
    discovery.set_passing(&name, vec![instance]);
    let pushed = tokio::time::timeout(Duration::from_secs(20), got.recv()).await;
    assert_eq!(pushed.expect("delivered once it came back").unwrap(), e.id);
    shutdown.cancel();
    task.await.unwrap();
    assert!(mem.dlq_list(&DlqQuery::default()).await.unwrap().is_empty());
    assert_eq!(mem.groups().await.unwrap()[0].pending, 0, "acked");
}

#[tokio::test]
async fn a_push_with_no_instance_past_the_wait_spends_its_attempt() {
    let name = flotilla_core::ServiceName::new("mailer").unwrap();
    let discovery = flotilla_discovery::StaticDiscovery::new();
    discovery.set_passing(&name, vec![]);
    let (mem, shutdown, task) = start_to_service(discovery, "gone", 100).await;
    Bus::new(Arc::new(mem.clone()))
        .publish(CloudEvent::new("/shop", "orders.created"))
        .await
        .unwrap();
    let dlq = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let dlq = mem.dlq_list(&DlqQuery::default()).await.unwrap();
            if !dlq.is_empty() {
                return dlq;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("dead-lettered once the wait ran out");
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(dlq[0].attempts, 1);
    assert!(
        dlq[0]
            .last_error
            .contains("no routable instance of mailer within 100ms"),
        "{}",
        dlq[0].last_error
    );
}

#[tokio::test]
async fn a_wait_for_instance_over_an_hour_is_refused_naming_it() {
    let options = Options {
        push: vec![PushOptions {
            url: None,
            service: Some("mailer".into()),
            wait_for_instance_ms: 3_600_001,
            ..push(String::new())
        }],
        ..Options::default()
    };
    let broker = Broker::new(options, Arc::new(MemoryBackend::new()))
        .unwrap()
        .with_discovery(Arc::new(flotilla_discovery::StaticDiscovery::new()));
    let err = broker.run(CancellationToken::new()).await.unwrap_err();
    assert!(
        err.to_string().contains("wait_for_instance_ms 3600001"),
        "{err}"
    );
}
