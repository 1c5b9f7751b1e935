//! Several nodes on one machine: two `flotilla registry` replicas sharing a catalog on
//! PostgreSQL and two `flotilla gateway`s following them, each process on its own ports.
//! Instances register with either replica and are routable through both gateways; then one
//! registry and one gateway are killed with SIGKILL:
//!
//! - every registration a replica acknowledged before it died is in the survivor's catalog;
//! - traffic through the surviving gateway keeps flowing (its discovery moves to the surviving
//!   replica, and it follows changes made there);
//! - a watch (blocking query) on the surviving replica sees every change, made on either;
//! - health checks of the instances the dead replica was checking resume on the survivor once
//!   its lease ends.
//!
//! The figures (failed requests, failover and takeover times, cross-replica watch latency) are
//! printed for docs/RELIABILITY.md; nothing here asserts on a duration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use flotilla_testkit::{Backend, backend, unique_name};
use serde_json::{Value, json};
use support::{SHOP_ROUTES, Up, drop_schema, eventually_value, http, serve, start_role, stop};

/// Instances registered in a burst on the replica that is then killed.
const BURST: usize = 20;
/// Replica lease of the test's registries (the default is 15 s).
const LEASE: &str = "3s";

/// An upstream answering `GET /hello` with its name, and `GET /health` as `healthy` says.
struct Upstream {
    port: u16,
    healthy: Arc<AtomicBool>,
}

fn upstream(name: &'static str) -> Upstream {
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    let app = axum::Router::new()
        .route("/hello", get(move || async move { name }))
        .route(
            "/health",
            get(move || {
                let ok = flag.load(Ordering::SeqCst);
                async move {
                    if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                }
            }),
        );
    let port = serve(app);
    Upstream { port, healthy }
}

fn register(registry: u16, id: &str, port: u16) {
    let body = json!({
        "id": id, "name": "shop", "address": "127.0.0.1", "port": port,
        "check": {"type": "http", "path": "/health", "interval": "500ms", "timeout": "400ms",
                  "failures_before_critical": 1},
    });
    let (status, text) = http(
        registry,
        "POST",
        "/api/v1/registry/instances",
        &body.to_string(),
    );
    assert!(
        status == 200 || status == 201,
        "register {id}: {status} {text}"
    );
}

fn deregister(registry: u16, id: &str) {
    let path = format!("/api/v1/registry/services/shop/instances/{id}");
    let (status, text) = http(registry, "DELETE", &path, "");
    assert!(
        (200..300).contains(&status),
        "deregister {id}: {status} {text}"
    );
}

/// The shop's instances on a replica: id -> status.
fn statuses(registry: u16) -> Vec<(String, String)> {
    let (status, body) = http(
        registry,
        "GET",
        "/api/v1/registry/services/shop?status=any",
        "",
    );
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    page["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let id = e["instance"]["id"].as_str().or(e["id"].as_str());
            (
                id.unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn ids(registry: u16) -> BTreeSet<String> {
    statuses(registry).into_iter().map(|(id, _)| id).collect()
}

fn registry(dir: &Path, url: &str, schema: &str, node: &str) -> Up {
    let empty = dir.join("no-routes.toml");
    std::fs::write(&empty, "").unwrap();
    let env = [
        ("FLOTILLA_REGISTRY__CATALOG__KIND", "postgres"),
        ("FLOTILLA_REGISTRY__CATALOG__URL", url),
        ("FLOTILLA_REGISTRY__CATALOG__SCHEMA", schema),
        ("FLOTILLA_REGISTRY__REPLICA_LEASE", LEASE),
        ("FLOTILLA_REGISTRY__NODE_NAME", node),
    ];
    start_role("registry", &dir.join(node), &empty, &env)
}

fn gateway(dir: &Path, name: &str, registries: &str) -> Up {
    let routes = dir.join("routes.toml");
    std::fs::write(&routes, SHOP_ROUTES).unwrap();
    let env = [("FLOTILLA_DISCOVERY__REGISTRY_URL", registries)];
    start_role("gateway", &dir.join(name), &routes, &env)
}

/// Requests through one gateway until stopped: how many, how many failed, which upstreams
/// answered.
#[derive(Default)]
struct Traffic {
    sent: AtomicU64,
    failed: AtomicU64,
    last_failure: Mutex<Option<(u16, String)>>,
    answered_by: Mutex<BTreeSet<String>>,
}

fn drive(port: u16, stop: Arc<AtomicBool>) -> (Arc<Traffic>, std::thread::JoinHandle<()>) {
    let traffic = Arc::new(Traffic::default());
    let t = traffic.clone();
    let handle = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let (status, body) = http(port, "GET", "/shop/hello", "");
            t.sent.fetch_add(1, Ordering::SeqCst);
            if status == 200 {
                t.answered_by.lock().unwrap().insert(body);
            } else {
                t.failed.fetch_add(1, Ordering::SeqCst);
                *t.last_failure.lock().unwrap() = Some((status, body));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (traffic, handle)
}

/// Every set of instance ids a watch answered with, and when.
type Seen = Vec<(Instant, BTreeSet<String>)>;

/// Blocking queries on one replica, recording every set of ids it answered with and when.
fn watch(port: u16, stop: Arc<AtomicBool>) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    std::thread::spawn(move || {
        let mut index = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let path = format!("/api/v1/registry/services/shop?status=any&index={index}&wait=2s");
            let (status, body) = http(port, "GET", &path, "");
            if status != 200 {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let page: Value = serde_json::from_str(&body).unwrap();
            index = page["revision"].as_u64().unwrap();
            let set = page["instances"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["instance"]["id"].as_str().or(e["id"].as_str()))
                .map(str::to_owned)
                .collect();
            out.lock().unwrap().push((Instant::now(), set));
        }
    });
    seen
}

/// When the watch first answered with a set satisfying `f`.
fn seen_at(seen: &Mutex<Seen>, what: &str, f: impl Fn(&BTreeSet<String>) -> bool) -> Instant {
    eventually_value(
        what,
        || {
            let seen = seen.lock().unwrap();
            seen.iter().find(|(_, s)| f(s)).map(|(at, _)| *at)
        },
        Option::is_some,
    )
    .unwrap()
}

fn kill(up: &mut Up) {
    up.child.kill().unwrap();
    up.child.wait().unwrap();
}

#[test]
fn two_registries_and_two_gateways_survive_losing_one_of_each() {
    let Some(url) = backend(Backend::Postgres, "multi-node registries and gateways") else {
        return;
    };
    let schema = unique_name("multi_node");
    let dir = tempfile::tempdir().unwrap();
    let mut r1 = registry(dir.path(), &url, &schema, "r1");
    let r2 = registry(dir.path(), &url, &schema, "r2");
    let (p1, p2) = (r1.api, r2.api);
    let g1 = gateway(
        dir.path(),
        "g1",
        &format!("http://127.0.0.1:{p1},http://127.0.0.1:{p2}"),
    );
    let mut g2 = gateway(
        dir.path(),
        "g2",
        &format!("http://127.0.0.1:{p2},http://127.0.0.1:{p1}"),
    );

    // One instance through each replica; both gateways route to both.
    let (a, b) = (upstream("a"), upstream("b"));
    register(p1, "a", a.port);
    register(p2, "b", b.port);
    let both = |r: u16| statuses(r).iter().filter(|(_, s)| s == "passing").count() == 2;
    eventually_value("both instances pass on r1", || both(p1), |ok| *ok);
    eventually_value("both instances pass on r2", || both(p2), |ok| *ok);
    let stop_watch = Arc::new(AtomicBool::new(false));
    let (stop_g1, stop_g2) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let watched = watch(p2, stop_watch.clone());
    let (t1, h1) = drive(g1.gateway, stop_g1.clone());
    let (t2, h2) = drive(g2.gateway, stop_g2.clone());
    eventually_value(
        "traffic flows through both gateways",
        || {
            (
                t1.answered_by.lock().unwrap().len(),
                t2.answered_by.lock().unwrap().len(),
            )
        },
        |(a, b)| *a > 0 && *b > 0,
    );

    // Instances with HTTP checks, half through each replica: the two replicas split their
    // checks, so some are checked by r1 when it dies.
    let checked = upstream("checked");
    let more: Vec<String> = (0..8).map(|i| format!("checked-{i}")).collect();
    for (i, id) in more.iter().enumerate() {
        register(if i % 2 == 0 { p1 } else { p2 }, id, checked.port);
    }
    let is_checked = |id: &String| id.starts_with("checked-");
    eventually_value(
        "the checked instances pass",
        || {
            let s = statuses(p2);
            s.iter()
                .filter(|(id, st)| is_checked(id) && st == "passing")
                .count()
        },
        |n| *n == more.len(),
    );

    // A burst of registrations acknowledged by r1, which dies right after the last answer.
    let burst = upstream("burst");
    let burst_ids: Vec<String> = (0..BURST).map(|i| format!("burst-{i}")).collect();
    let mut acked_at = Instant::now();
    for id in &burst_ids {
        register(p1, id, burst.port);
        acked_at = Instant::now();
    }
    stop_g2.store(true, Ordering::SeqCst);
    h2.join().unwrap();
    let (sent_before, failed_before) = (
        t1.sent.load(Ordering::SeqCst),
        t1.failed.load(Ordering::SeqCst),
    );
    kill(&mut r1);
    kill(&mut g2);
    let killed_at = Instant::now();
    // From now on every check of `checked` fails: each instance turns critical only once a
    // live replica checks it, including those r1 was checking.
    checked.healthy.store(false, Ordering::SeqCst);
    let all_burst = |s: &BTreeSet<String>| burst_ids.iter().all(|id| s.contains(id));
    // Replicas apply each other's changes asynchronously (woken by a notification, or at
    // the next catch-up read): acknowledged means stored, and the survivor shows it soon.
    eventually_value(
        "every registration r1 acknowledged is on r2",
        || ids(p2),
        all_burst,
    );
    let burst_seen = seen_at(&watched, "the watch on r2 sees the burst", all_burst);

    // Checks of the instances r1 was checking resume on r2 once r1's lease ends.
    eventually_value(
        "every checked instance turns critical on r2",
        || statuses(p2),
        |s| {
            let checked: Vec<_> = s.iter().filter(|(id, _)| is_checked(id)).collect();
            checked.len() == more.len() && checked.iter().all(|(_, st)| st == "critical")
        },
    );
    let all_critical = killed_at.elapsed();

    // The surviving gateway follows changes made on the surviving replica.
    let c = upstream("c");
    register(p2, "c", c.port);
    eventually_value(
        "c passes before the others leave",
        || statuses(p2).contains(&("c".to_owned(), "passing".to_owned())),
        |ok| *ok,
    );
    let mut gone: Vec<&str> = vec!["a", "b"];
    gone.extend(more.iter().map(String::as_str));
    gone.extend(burst_ids.iter().map(String::as_str));
    for id in &gone {
        deregister(p2, id);
    }
    let changed_at = Instant::now();
    let only_c = |s: &BTreeSet<String>| s.len() == 1 && s.contains("c");
    let watch_saw_c = seen_at(&watched, "the watch on r2 sees c alone", only_c);
    let followed = eventually_value(
        "g1 routes to c alone (its discovery moved to r2)",
        || {
            let (status, body) = http(g1.gateway, "GET", "/shop/hello", "");
            (status, body, Instant::now())
        },
        |(status, body, _)| *status == 200 && body == "c",
    )
    .2;
    stop_g1.store(true, Ordering::SeqCst);
    h1.join().unwrap();
    let sent_after = t1.sent.load(Ordering::SeqCst) - sent_before;
    let failed_after = t1.failed.load(Ordering::SeqCst) - failed_before;
    assert_eq!(
        failed_after,
        0,
        "no request through the surviving gateway failed ({sent_after} sent since the kills); \
         the last failure: {:?}",
        t1.last_failure.lock().unwrap()
    );

    stop_watch.store(true, Ordering::SeqCst);
    eprintln!(
        "multi-node: through g1 {sent_after} requests after the kills, {failed_after} failed; \
         the watch on r2 saw r1's burst {:?} after its last acknowledgement; after the last \
         change made on r2 its watch woke in {:?} and g1 routed by it in {:?}; every check \
         critical {:?} after the kills ({LEASE} lease)",
        burst_seen.saturating_duration_since(acked_at),
        watch_saw_c.saturating_duration_since(changed_at),
        followed.saturating_duration_since(changed_at),
        all_critical,
    );
    stop(g1);
    stop(r2);
    assert!(drop_schema(&url, &schema), "dropping schema {schema}");
}
