//! Out of file descriptors, the accept loop backs off instead of spinning, logs once per
//! episode, and serves again when descriptors free up.
//!
//! Alone in its own test binary: it lowers this process's descriptor limit, which would break
//! any test running beside it.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use flotilla_testkit::logs::CapturedLogs;
use rustix::process::{Resource, getrlimit, setrlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

fn open_descriptors() -> Vec<u64> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Lowers the soft descriptor limit to just above the highest open descriptor and fills every
/// free slot below it, so the next `accept` fails with EMFILE. Returns the fillers.
fn exhaust_descriptors() -> Vec<std::fs::File> {
    let highest = open_descriptors().into_iter().max().unwrap();
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = Some(highest + 1);
    setrlimit(Resource::Nofile, limit).unwrap();
    std::iter::from_fn(|| std::fs::File::open("/dev/null").ok()).collect()
}

fn count(logs: &str, message: &str) -> usize {
    logs.lines().filter(|l| l.contains(message)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_backs_off_logs_once_and_recovers() {
    let logs = CapturedLogs::global();
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"u\""
    ))
    .await;
    let original = getrlimit(Resource::Nofile);
    // Client sockets take their descriptors now; they connect once none is left, so the
    // kernel completes their handshakes (the listen backlog) but the gateway cannot accept.
    let sockets: Vec<TcpSocket> = (0..4).map(|_| TcpSocket::new_v4().unwrap()).collect();
    let fillers = exhaust_descriptors();
    let mut clients = Vec::new();
    for s in sockets {
        clients.push(s.connect(gw.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let during = logs.contents();
    drop(fillers);
    setrlimit(Resource::Nofile, original).unwrap();
    // A descriptor freed meanwhile (a closing connection) lets one accept through and ends an
    // episode; each episode warns once, whatever their number.
    let (warned, recovered) = (
        count(&during, "accept failed; backing off"),
        count(&during, "accepting connections again"),
    );
    let failures = count(&during, "accept failed");
    assert!(
        (1..=3).contains(&warned),
        "{failures} failures logged in 400 ms"
    );
    assert_eq!(warned, recovered + 1, "one warning per episode");
    let retries = count(&during, "accept still failing");
    assert!((1..=12).contains(&retries), "{retries} retries in 400 ms");
    let mut c = clients.pop().unwrap();
    c.write_all(b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut out)).await;
    assert!(read.is_ok(), "no answer after recovery");
    assert_eq!(
        first_status(&out),
        200,
        "served once descriptors are free: {out}"
    );
    let all = logs.contents();
    assert_eq!(
        count(&all, "accepting connections again"),
        count(&all, "accept failed; backing off"),
        "every episode ended"
    );
}
