//! Benchmark helper for `bench/gateway/run.sh`: runs the gateway from a TOML file, a trivial
//! upstream, or prints an HS256 token, each on a one-worker runtime so a `taskset` pin
//! compares like with like against a one-worker nginx.
//!
//! ```text
//! bench_gateway serve <config.toml> <addr> [workers|multi|current]
//! bench_gateway upstream <addr>
//! bench_gateway token <secret>
//! bench_gateway idle <addr> <connections>
//! ```
//!
//! `serve` runs like `flotilla gateway`: one current-thread runtime per core available to the
//! process, each with its own `SO_REUSEPORT` socket and upstream pool (`workers`, the default;
//! `GATEWAY_WORKERS=n` sets how many). For comparison: the whole gateway on a work-stealing
//! runtime with one worker (`multi`) or on one current-thread runtime (`current`).
//!
//! `idle` opens that many keep-alive connections, sends one request on each, reads its
//! answer, prints `ready` and then holds them open, idle, until it is killed: the proxy's
//! memory is read meanwhile.

use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use flotilla_discovery::StaticDiscovery;
use flotilla_gateway::{Gateway, GatewayOptions, WorkerListeners};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let shape = args.get(4).map_or("workers", String::as_str);
    let rt = match shape {
        // With `workers`, this runtime only runs the upkeep and waits for the workers.
        "current" | "workers" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        "multi" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?,
        other => bail!("runtime must be `workers`, `multi` or `current`, not {other:?}"),
    };
    match args.get(1).map(String::as_str) {
        Some("serve") if (4..=5).contains(&args.len()) => {
            rt.block_on(serve(&args[2], &args[3], shape == "workers"))
        }
        Some("upstream") if args.len() == 3 => rt.block_on(upstream(&args[2])),
        Some("token") if args.len() == 3 => token(&args[2]),
        Some("idle") if args.len() == 4 => rt.block_on(idle(&args[2], args[3].parse()?)),
        _ => bail!(
            "usage: bench_gateway serve <config.toml> <addr> [workers|multi|current] | upstream <addr> | token <secret> \
             | idle <addr> <connections>"
        ),
    }
}

async fn serve(config: &str, addr: &str, workers: bool) -> anyhow::Result<()> {
    // Spans are exported only when the `OTEL_*` variables ask (bench/tracing/run.sh).
    let tracing =
        flotilla_telemetry::TracingOptions::default().with_env(|k| std::env::var(k).ok())?;
    let logs = flotilla_telemetry::Logs {
        json: false,
        filter: "warn".into(),
    };
    flotilla_telemetry::init(&logs, &tracing, "gateway")?;
    let text = std::fs::read_to_string(config).with_context(|| format!("reading {config}"))?;
    let gw = Gateway::new(
        GatewayOptions::from_toml(&text)?,
        Arc::new(StaticDiscovery::new()),
    )?;
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let (gw, s) = (gw.clone(), shutdown.clone());
        async move { gw.run(s).await }
    });
    if workers {
        let n = match std::env::var("GATEWAY_WORKERS") {
            Ok(v) => v.parse().context("GATEWAY_WORKERS")?,
            Err(_) => 0,
        };
        let listeners = WorkerListeners::bind(addr.parse()?, n)?;
        gw.serve_workers(listeners, shutdown).await?;
    } else {
        gw.serve(TcpListener::bind(addr).await?, shutdown).await?;
    }
    Ok(())
}

async fn upstream(addr: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (s, _) = listener.accept().await?;
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                    Bytes::from_static(b"ok"),
                )))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

async fn idle(addr: &str, connections: usize) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr: std::net::SocketAddr = addr.parse()?;
    let mut held = Vec::with_capacity(connections);
    // Opened in waves so the listener's backlog is never the limit.
    for wave in (0..connections).collect::<Vec<_>>().chunks(500) {
        let mut opening = tokio::task::JoinSet::new();
        for _ in wave {
            opening.spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await?;
                s.write_all(b"GET /users/42 HTTP/1.1\r\nHost: bench\r\n\r\n")
                    .await?;
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await?;
                anyhow::ensure!(buf[..n].starts_with(b"HTTP/1.1 200"), "no 200 from {addr}");
                anyhow::Ok(s)
            });
        }
        while let Some(s) = opening.join_next().await {
            held.push(s??);
        }
    }
    println!("ready {}", held.len());
    std::future::pending::<()>().await;
    Ok(())
}

fn token(secret: &str) -> anyhow::Result<()> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 86_400;
    let claims = serde_json::json!({"sub": "bench", "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    println!(
        "{}",
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)?
    );
    Ok(())
}
