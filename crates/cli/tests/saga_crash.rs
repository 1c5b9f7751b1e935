//! The saga crash test against the real binary: sagas are started over the HTTP API (each
//! under its own id, so a start whose answer a kill swallowed is sent again safely) while
//! `flotilla up` is SIGKILLed and restarted on the same data, again and again. The HTTP
//! participant fails calls at random (503 before doing anything), declines large charges and
//! applies each effect once per idempotency key, counting every call. In the end every saga
//! has ended completed or compensated; each effect was applied once per key; every release
//! names a reservation that was asked for; and stock is conserved: the reservations still held
//! are exactly the completed sagas'.
//!
//! `FLOTILLA_SAGA_CRASH_SAGAS` (default 150) and `FLOTILLA_SAGA_CRASH_KILLS` (default 3) size
//! it; docs/RELIABILITY.md has a run with 1,000.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, post};
use serde_json::{Value, json};
use support::saga_shop::{OrderSaga, idempotency_key, start_with_saga};
use support::{Up, register_shop, serve, stop};

/// Retried more (and sooner) than the other saga tests, since one call in eight fails.
const SAGA: OrderSaga = OrderSaga {
    attempts: 8,
    compensation_attempts: 30,
    base_delay: "20ms",
    charge_body: r#"{ amount = "{{data.amount}}" }"#,
};

/// Everything the participant was asked and what it applied, by idempotency key.
#[derive(Debug, Default)]
struct Shop {
    /// Reservation keys applied, and whether each was released since.
    reservations: HashMap<String, bool>,
    /// Reservation keys ever asked for (a 503 included).
    asked: HashSet<String>,
    /// Releases of a key never asked for.
    orphan_releases: Vec<String>,
    /// Payment keys applied.
    payments: HashSet<String>,
    /// Requests answered 503 on purpose.
    failed: usize,
    /// Calls seen per key and kind (`reserve`, `release`, `charge`).
    calls: HashMap<(String, &'static str), u32>,
}

type Shared = Arc<Mutex<Shop>>;

impl Shop {
    /// Counts the call; true when it is to fail (about one call in eight, decided by a hash
    /// of the key and how often it was called, so reruns differ).
    fn call(&mut self, key: &str, kind: &'static str) -> bool {
        let n = self.calls.entry((key.to_owned(), kind)).or_default();
        *n += 1;
        let mut h = std::hash::DefaultHasher::new();
        (key, kind, *n).hash(&mut h);
        let fail = h.finish().is_multiple_of(8);
        self.failed += usize::from(fail);
        fail
    }
}

async fn reserve(State(shop): State<Shared>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let key = idempotency_key(&headers);
    let mut shop = shop.lock().unwrap();
    shop.asked.insert(key.clone());
    if shop.call(&key, "reserve") {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
    }
    shop.reservations.entry(key.clone()).or_insert(false);
    (StatusCode::OK, Json(json!({ "id": key })))
}

async fn release(State(shop): State<Shared>, UrlPath(key): UrlPath<String>) -> StatusCode {
    let mut shop = shop.lock().unwrap();
    if shop.call(&key, "release") {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if !shop.asked.contains(&key) {
        shop.orphan_releases.push(key.clone());
    }
    if let Some(released) = shop.reservations.get_mut(&key) {
        *released = true;
    }
    StatusCode::NO_CONTENT
}

async fn charge(
    State(shop): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let key = idempotency_key(&headers);
    let mut shop = shop.lock().unwrap();
    if shop.call(&key, "charge") {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
    }
    if body["amount"].as_u64().is_none_or(|a| a > 100) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "declined" })),
        );
    }
    shop.payments.insert(key);
    (StatusCode::OK, Json(json!({ "charged": true })))
}

fn participant() -> (u16, Shared) {
    let shop = Shared::default();
    let app = axum::Router::new()
        .route("/reservations", post(reserve))
        .route("/reservations/{key}", delete(release))
        .route("/payments", post(charge))
        .with_state(shop.clone());
    (serve(app), shop)
}

/// One request; `None` when the connection failed (the platform was killed under it).
fn try_http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut res = String::new();
    s.read_to_string(&mut res).ok()?;
    let status = res.get(9..12)?.parse().ok()?;
    let body = res.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn up(dir: &Path, shop_port: u16) -> Up {
    let up = start_with_saga("up", dir, &SAGA.definition(), &[]);
    register_shop(up.api, shop_port);
    up
}

fn amount(i: usize) -> u64 {
    if i.is_multiple_of(3) { 500 } else { 40 }
}

/// Starts sagas `ids` on four threads, counting the answered starts in `answered`; the ones
/// whose start got no answer.
fn start_all(api: u16, ids: Vec<usize>, answered: Arc<AtomicUsize>) -> Vec<usize> {
    let queue = Arc::new(Mutex::new(ids));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let queue = queue.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut unanswered = Vec::new();
                while let Some(i) = queue.lock().unwrap().pop() {
                    let body = json!({
                        "id": format!("crash-{i}"),
                        "data": { "order": format!("o-{i}"), "amount": amount(i) },
                    });
                    match try_http(api, "POST", "/api/v1/sagas/order", &body.to_string()) {
                        Some((200 | 201, _)) => {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        Some((status, text)) => panic!("start {i}: {status} {text}"),
                        None => unanswered.push(i),
                    }
                }
                unanswered
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

/// How many sagas are still running or compensating.
fn open_sagas(api: u16) -> usize {
    ["running", "compensating"]
        .iter()
        .map(|s| {
            let path = format!("/api/v1/sagas?status={s}&limit=1000");
            let (_, body) = try_http(api, "GET", &path, "").unwrap();
            let list: Value = serde_json::from_str(&body).unwrap();
            list["sagas"].as_array().map_or(0, Vec::len)
        })
        .sum()
}

#[test]
fn sagas_survive_repeated_sigkills_of_the_binary_with_every_effect_once() {
    let sagas = env_number("FLOTILLA_SAGA_CRASH_SAGAS", 150);
    let kills = env_number("FLOTILLA_SAGA_CRASH_KILLS", 3);
    let dir = tempfile::tempdir().unwrap();
    let (port, shop) = participant();
    let began = Instant::now();
    let mut pending: Vec<usize> = (0..sagas).rev().collect();
    let per_round = sagas.div_ceil(kills + 1);
    let mut resent = 0;
    for round in 0..kills {
        let mut up = up(dir.path(), port);
        let batch = pending.split_off(pending.len().saturating_sub(per_round));
        let (api, size) = (up.api, batch.len());
        let answered = Arc::new(AtomicUsize::new(0));
        let counted = answered.clone();
        let starter = std::thread::spawn(move || start_all(api, batch, counted));
        // Kill while starts and steps are in flight: once a share of the round's starts that
        // varies by round has been answered, so the rest of the round meets a dead platform
        // however fast this machine starts sagas.
        let share = size * (2 + round % 3) / 5;
        while answered.load(Ordering::SeqCst) < share.max(1) && !starter.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        up.child.kill().unwrap();
        up.child.wait().unwrap();
        let unanswered = starter.join().unwrap();
        resent += unanswered.len();
        pending.extend(unanswered);
    }
    let last = up(dir.path(), port);
    let unanswered = start_all(last.api, pending, Arc::default());
    assert!(unanswered.is_empty(), "starts failed with no kill");
    let deadline = Instant::now() + Duration::from_secs(120);
    while open_sagas(last.api) > 0 {
        assert!(Instant::now() < deadline, "sagas still open after 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    let shop = shop.lock().unwrap();
    for i in 0..sagas {
        let id = format!("crash-{i}");
        let (status, body) = try_http(last.api, "GET", &format!("/api/v1/sagas/{id}"), "").unwrap();
        assert_eq!(status, 200, "{id}: {body}");
        let state: Value = serde_json::from_str(&body).unwrap();
        let outcome = state["status"].as_str().unwrap().to_owned();
        let (reserve, charge) = (format!("{id}:reserve"), format!("{id}:charge"));
        let held = shop.reservations.get(&reserve) == Some(&false);
        let paid = shop.payments.contains(&charge);
        match outcome.as_str() {
            "completed" => assert!(held && paid && amount(i) <= 100, "{id}: {state}"),
            "compensated" => assert!(!held && !paid, "{id}: {state}"),
            _ => panic!("{id} ended {outcome}: {state}"),
        }
        *outcomes.entry(outcome).or_default() += 1;
    }
    assert!(
        shop.orphan_releases.is_empty(),
        "{:?}",
        shop.orphan_releases
    );
    let live = shop
        .reservations
        .values()
        .filter(|released| !**released)
        .count();
    assert_eq!(live, outcomes.get("completed").copied().unwrap_or(0));
    assert!(resent > 0, "no kill landed while sagas were being started");
    let repeated = shop.calls.values().filter(|n| **n > 1).count();
    eprintln!(
        "{sagas} sagas, {kills} SIGKILLs, {resent} starts resent after a kill, {:.1} s: \
         {outcomes:?}; participant: {} calls failed on purpose, {repeated} keys called more \
         than once, each applied once",
        began.elapsed().as_secs_f64(),
        shop.failed
    );
    drop(shop);
    stop(last);
}
