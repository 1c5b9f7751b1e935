//! Registry benchmarks (run through `bench/registry/run.sh`, which also drives wrk):
//!
//! - `serve N`: a registry with N passing instances of `users` on 127.0.0.1:4481, for wrk.
//! - `discover`: discover requests/s over HTTP with an in-process keep-alive load loop.
//! - `resolve`: resolving an instance from the client's local cache.
//! - `fanout N`: time from a status change to the last of N in-process watchers being notified.
//! - `fanout-http N`: the same for N registry clients following over HTTP blocking queries.
//! - `checks N`: CPU the registry spends health-checking N instances every second over HTTP.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_core::{ServiceInstance, ServiceName};
use flotilla_discovery::catalog::MemoryCatalogStore;
use flotilla_discovery::{Discovery, HealthStatus};
use flotilla_registry::{CheckKind, CheckSpec, Options, Registration, Registry};
use flotilla_registry_client::{ClientOptions, RegistryClient};
use tokio_util::sync::CancellationToken;

fn users() -> ServiceName {
    ServiceName::new("users").unwrap()
}

async fn registry_with(n: usize) -> Registry {
    let r = Registry::new(Options::default(), Arc::new(MemoryCatalogStore::new()))
        .await
        .unwrap();
    for i in 0..n {
        let mut inst = ServiceInstance::new(users(), "10.0.0.1", u16::try_from(1000 + i).unwrap());
        inst.tags = vec!["primary".into()];
        r.register(Registration::new(inst)).await.unwrap();
    }
    r
}

async fn serve(r: &Registry, addr: &str) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let a = l.local_addr().unwrap();
    let router = r.router();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    a
}

async fn discover() {
    use http_body_util::{BodyExt, Empty};
    let r = registry_with(10).await;
    let addr = serve(&r, "127.0.0.1:0").await;
    let uri: http::Uri = format!("http://{addr}/api/v1/registry/services/users")
        .parse()
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let deadline = Instant::now() + Duration::from_secs(5);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (client, uri) = (client.clone(), uri.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let resp = client.get(uri.clone()).await.unwrap();
                    assert!(resp.status().is_success());
                    resp.into_body().collect().await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    println!(
        "discover over HTTP (10 instances, 32 keep-alive connections, in-process client): {:.0} req/s",
        total as f64 / 5.0
    );
}

async fn resolve() {
    let r = registry_with(10).await;
    let addr = serve(&r, "127.0.0.1:0").await;
    let client = RegistryClient::new(ClientOptions::new(format!("http://{addr}"))).unwrap();
    let mut rx = client.watch(&users());
    rx.wait_for(|s| s.routable().count() == 10).await.unwrap();
    let iterations = 10_000_000u64;
    let started = Instant::now();
    let mut picked = 0usize;
    for i in 0..iterations {
        let set = rx.borrow();
        let n = set.endpoints.len();
        let e = &set.endpoints[(i as usize) % n];
        if e.status.is_routable() {
            picked += usize::from(e.instance.port);
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / iterations as f64;
    println!(
        "resolve from the client cache (borrow + pick, 10 instances): {ns:.1} ns/op (checksum {picked})"
    );
    let started = Instant::now();
    for _ in 0..1_000_000 {
        std::hint::black_box(client.snapshot(&users()));
    }
    let ns = started.elapsed().as_nanos() as f64 / 1_000_000.0;
    println!("Discovery::snapshot (map lookup + Arc clone): {ns:.1} ns/op");
}

async fn fanout(n: usize) {
    let r = registry_with(10).await;
    let mut times = Vec::new();
    for _ in 0..5 {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ready = Arc::new(tokio::sync::Barrier::new(n + 1));
        for _ in 0..n {
            let mut w = r.watch(&users());
            w.mark_unchanged();
            let (tx, ready) = (tx.clone(), ready.clone());
            tokio::spawn(async move {
                ready.wait().await;
                w.changed().await.unwrap();
                tx.send(Instant::now()).unwrap();
            });
        }
        ready.wait().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        r.heartbeat(
            &users(),
            "users-10.0.0.1-1000",
            if times.len() % 2 == 0 {
                HealthStatus::Warning
            } else {
                HealthStatus::Passing
            },
            None,
        )
        .await
        .unwrap();
        let mut last = started;
        for _ in 0..n {
            last = last.max(rx.recv().await.unwrap());
        }
        times.push(last - started);
    }
    times.sort();
    println!(
        "fan-out to {n} in-process watchers, change to last notified: median {:?} (min {:?}, max {:?}, 5 runs)",
        times[2], times[0], times[4]
    );
}

async fn fanout_http(n: usize) {
    let r = registry_with(10).await;
    let addr = serve(&r, "127.0.0.1:0").await;
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        let mut o = ClientOptions::new(format!("http://{addr}"));
        o.wait = Duration::from_secs(60);
        let client = RegistryClient::new(o).unwrap();
        let rx = client.watch(&users());
        receivers.push((client, rx));
    }
    for (_, rx) in &mut receivers {
        rx.wait_for(|s| s.endpoints.len() == 10).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // every follower is now parked
    let (tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for (_, rx) in &receivers {
        let (mut rx, tx) = (rx.clone(), tx.clone());
        rx.mark_unchanged();
        tokio::spawn(async move {
            rx.changed().await.unwrap();
            tx.send(Instant::now()).unwrap();
        });
    }
    let started = Instant::now();
    r.heartbeat(&users(), "users-10.0.0.1-1000", HealthStatus::Warning, None)
        .await
        .unwrap();
    let mut last = started;
    for _ in 0..n {
        last = last.max(done.recv().await.unwrap());
    }
    println!(
        "fan-out to {n} registry clients over HTTP (blocking queries), change to last cache updated: {:?}",
        last - started
    );
}

fn registry_cpu() -> Duration {
    // Sum user+system time of the registry runtime's threads (named "registry"), so the
    // upstream health endpoints' CPU is not counted.
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "registry" {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        total += ticks / tick;
    }
    Duration::from_secs_f64(total)
}

fn checks(n: usize) {
    // Upstream health endpoints on their own runtime and threads.
    let upstream = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("upstream")
        .enable_all()
        .build()
        .unwrap();
    let ports: Vec<u16> = upstream.block_on(async {
        let mut ports = Vec::new();
        for _ in 0..50 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ports.push(l.local_addr().unwrap().port());
            let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
            tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        }
        ports
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("registry")
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = Registry::new(Options::default(), Arc::new(MemoryCatalogStore::new())).await.unwrap();
        let stop = CancellationToken::new();
        let runner = r.clone();
        let token = stop.clone();
        tokio::spawn(async move { runner.run(token).await });
        for i in 0..n {
            let mut inst = ServiceInstance::new(users(), "127.0.0.1", ports[i % ports.len()]);
            inst.id = format!("u{i}");
            let mut check = CheckSpec::new(CheckKind::Http { path: "/health".into(), url: None, method: "GET".into(), headers: Default::default(), expected_status: None });
            check.interval = Duration::from_secs(1);
            check.timeout = Duration::from_millis(900);
            let mut reg = Registration::new(inst);
            reg.check = Some(check);
            r.register(reg).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3)).await; // warm up: every check has run
        let cpu0 = registry_cpu();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let cpu = registry_cpu() - cpu0;
        let wall = t0.elapsed();
        let passing = r.instances(&users(), &Default::default()).1.len();
        let text = r.metrics_text();
        let checks_run: f64 = text
            .lines()
            .filter(|l| l.starts_with("flotilla_registry_checks_total{kind=\"http\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        println!(
            "health-checking {n} instances over HTTP at 1 s: {:.1}% of one core ({:.2} s CPU in {:.1} s), {passing} passing, {checks_run:.0} checks run in total",
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
            cpu.as_secs_f64(),
            wall.as_secs_f64()
        );
        stop.cancel();
    });
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let what = args.first().map(String::as_str).unwrap_or("all");
    let n = |default: usize| args.get(1).and_then(|v| v.parse().ok()).unwrap_or(default);
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    match what {
        "serve" => rt().block_on(async {
            let r = registry_with(n(10)).await;
            let addr = serve(&r, "127.0.0.1:4481").await;
            println!("serving on {addr}");
            std::future::pending::<()>().await;
        }),
        "discover" => rt().block_on(discover()),
        "resolve" => rt().block_on(resolve()),
        "fanout" => rt().block_on(fanout(n(1000))),
        "fanout-http" => rt().block_on(fanout_http(n(1000))),
        "checks" => checks(n(5000)),
        _ => {
            rt().block_on(discover());
            rt().block_on(resolve());
            rt().block_on(fanout(1000));
            rt().block_on(fanout(10_000));
            rt().block_on(fanout_http(1000));
            checks(5000);
        }
    }
}
