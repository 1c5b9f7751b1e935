//! Load generator for `bench/sdk/run.sh`: calls a server running in another process with a
//! `ServiceClient` (full default policy stack) or with a bare hyper-util client, from one
//! worker thread, keeping CONCURRENCY calls in flight for SECONDS, and prints
//! `requests_per_second cpu_microseconds_per_request` (this process's user+system time).
//!
//! ```text
//! bench_client sdk|bare <host:port> <path> <seconds> <concurrency>
//! ```
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use flotilla_client::ServiceClient;
use flotilla_core::{ServiceInstance, ServiceName};
use flotilla_discovery::StaticDiscovery;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

struct Args {
    mode: String,
    addr: std::net::SocketAddr,
    path: String,
    run_for: Duration,
    concurrency: usize,
}

fn args() -> anyhow::Result<Args> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [mode, addr, path, seconds, concurrency] = a.as_slice() else {
        bail!("usage: bench_client sdk|bare <host:port> <path> <seconds> <concurrency>");
    };
    Ok(Args {
        mode: mode.clone(),
        addr: addr.parse().with_context(|| format!("address {addr:?}"))?,
        path: path.clone(),
        run_for: Duration::from_secs_f64(seconds.parse().context("seconds")?),
        concurrency: concurrency.parse().context("concurrency")?,
    })
}

/// One call, as a boxed future factory so both clients share the driving loop.
type Call = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>
        + Send
        + Sync,
>;

fn bare(a: &Args) -> anyhow::Result<Call> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url: http::Uri = format!("http://{}{}", a.addr, a.path).parse()?;
    Ok(Arc::new(move || {
        let (client, url) = (client.clone(), url.clone());
        Box::pin(async move {
            let resp = client.get(url).await?;
            resp.into_body().collect().await?;
            Ok(())
        })
    }))
}

fn sdk(a: &Args) -> anyhow::Result<Call> {
    let discovery = StaticDiscovery::new();
    let name = ServiceName::new("bench")?;
    let instance = ServiceInstance::new(name.clone(), a.addr.ip().to_string(), a.addr.port());
    discovery.set_passing(&name, vec![instance]);
    let client = ServiceClient::new(Arc::new(discovery));
    let path = a.path.clone();
    Ok(Arc::new(move || {
        let (client, path) = (client.clone(), path.clone());
        Box::pin(async move {
            client.service("bench").get(&path).send().await?;
            Ok(())
        })
    }))
}

fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

async fn drive(call: Call, a: &Args) -> anyhow::Result<()> {
    // Warm the pool and the server before measuring.
    for _ in 0..a.concurrency {
        call().await?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + a.run_for;
    let (started, cpu0) = (Instant::now(), cpu_seconds()?);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..a.concurrency {
        let (call, done) = (call.clone(), done.clone());
        tasks.spawn(async move {
            while Instant::now() < until {
                call().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let (elapsed, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds()? - cpu0);
    let n = done.load(Ordering::Relaxed) as f64;
    println!("{:.0} {:.2}", n / elapsed, cpu * 1e6 / n);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let call = match a.mode.as_str() {
        "bare" => bare(&a)?,
        "sdk" => sdk(&a)?,
        other => bail!("mode must be `sdk` or `bare`, not {other:?}"),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(drive(call, &a))
}
