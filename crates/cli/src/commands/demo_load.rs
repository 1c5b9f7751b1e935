//! `flotilla demo load`: a realistic mix of shop traffic through the gateway at a steady rate
//! (open loop: a request starts every 1/rate seconds whether or not earlier ones answered), a
//! live line on a terminal, a summary at the end, and the outcome of every order placed
//! (payments declined by `shop.payment_failure_rate` end `cancelled`).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::demo::DEMO_TOKEN;
use super::demo_http::Http;
use super::demo_load_stats::{Kind, Stats};
use crate::Failure;
use crate::out;
use crate::platform::PlatformConfig;

#[derive(Debug, Subcommand)]
pub(crate) enum DemoCommand {
    /// Send shop traffic through the gateway: browse products, create users, place orders
    /// (some of whose payments fail), at `--rate` for `--duration`.
    Load(LoadArgs),
}

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// The gateway in front of the demo shop. Default: `http://` + `gateway.listen` of the
    /// configuration (`FLOTILLA_CONFIG`, else `./flotilla.toml` when present, and
    /// `FLOTILLA_GATEWAY__LISTEN`), else `http://127.0.0.1:8080`.
    #[arg(long)]
    gateway: Option<String>,
    /// Requests per second, evenly spaced.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// How long to send (`60s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Bearer token for writes. Default: the routes' demo token.
    #[arg(long, env = "FLOTILLA_DEMO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the summary as one JSON document.
    #[arg(long)]
    json: bool,
}

/// The skus orders are made of (the espresso machine is left out: it always fails payment).
const SKUS: [&str; 3] = ["mug", "tee", "poster"];
/// Most requests in flight at once; past it the generator waits, and the achieved rate in the
/// summary shows it.
const MAX_IN_FLIGHT: usize = 512;
/// How long the summary waits for placed orders to settle.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);

pub(crate) fn run(cmd: DemoCommand) -> Result<(), Failure> {
    let DemoCommand::Load(args) = cmd;
    if !(args.rate > 0.0 && args.rate <= 10_000.0) {
        return Err(Failure::Usage(format!(
            "--rate {} must be above 0 and at most 10000",
            args.rate
        )));
    }
    if args.duration.is_zero() {
        return Err(Failure::Usage("--duration must be above 0".into()));
    }
    let gateway = match &args.gateway {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => configured_gateway()?,
    };
    if !gateway.starts_with("http://") {
        return Err(Failure::Usage(format!(
            "--gateway {gateway:?} must start with http://"
        )));
    }
    super::runtime()?
        .block_on(load(args, gateway))
        .map_err(Failure::Runtime)
}

/// The gateway `flotilla up` would listen on with the configuration found as the admin
/// commands find theirs.
fn configured_gateway() -> Result<String, Failure> {
    let file = std::env::var_os("FLOTILLA_CONFIG")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("flotilla.toml")).filter(|p| p.exists()));
    let config = PlatformConfig::load(file.as_deref())?;
    let listen = crate::locate::reachable(config.gateway.listen);
    Ok(format!("http://{listen}"))
}

/// Who and what the mix works with: users and orders created so far.
#[derive(Debug)]
struct Shop {
    http: Http,
    gateway: String,
    stats: Stats,
    users: Mutex<Vec<String>>,
    orders: Mutex<Vec<String>>,
}

async fn load(args: LoadArgs, gateway: String) -> anyhow::Result<()> {
    let token = args.token.clone().unwrap_or_else(|| DEMO_TOKEN.to_owned());
    let shop = Arc::new(Shop {
        http: Http::new(Some(token)),
        gateway,
        stats: Stats::default(),
        users: Mutex::default(),
        orders: Mutex::default(),
    });
    prepare(&shop, &args).await?;
    let started = Instant::now();
    let live = std::io::stderr().is_terminal().then(|| {
        let shop = shop.clone();
        tokio::spawn(async move { live_line(&shop, started).await })
    });
    drive(&shop, args.rate, args.duration).await;
    let elapsed = started.elapsed();
    if let Some(live) = live {
        live.abort();
        eprintln!();
    }
    let mut summary = shop.stats.summary(elapsed);
    summary["target_rate"] = json!(args.rate);
    summary["orders"] = settle(&shop).await?;
    match args.json {
        true => out::json(&summary),
        false => print_summary(&summary),
    }
    Ok(())
}

/// Checks the shop answers, restocks enough for the run and creates a few users to order as.
async fn prepare(shop: &Shop, args: &LoadArgs) -> anyhow::Result<()> {
    let url = format!("{}/api/products", shop.gateway);
    let (status, _) = shop.http.get(&url).await.with_context(|| {
        format!(
            "is the demo running (flotilla up --demo) with its gateway at {}?",
            shop.gateway
        )
    })?;
    if status != StatusCode::OK {
        bail!("GET {url} answered {status}: is the demo shop running behind this gateway?");
    }
    // An order takes at most 3 of a sku; orders are ~15 % of the mix.
    let orders = (args.rate * args.duration.as_secs_f64() * 0.15).ceil() as u64;
    for sku in SKUS {
        let url = format!("{}/api/products/{sku}/stock", shop.gateway);
        let (status, body) = shop
            .http
            .post(&url, json!({ "quantity": orders * 3 + 10 }))
            .await?;
        if !status.is_success() {
            bail!("restocking {sku}: {status} {body}");
        }
    }
    for _ in 0..3 {
        create_user(shop).await;
    }
    if shop
        .users
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_empty()
    {
        bail!(
            "cannot create users through {}: {}",
            shop.gateway,
            shop.stats.summary(Duration::from_secs(1))["errors_by_status"]
        );
    }
    Ok(())
}

/// Starts one request every 1/rate seconds until `duration` has passed, then waits for the
/// ones in flight.
async fn drive(shop: &Arc<Shop>, rate: f64, duration: Duration) {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let end = tokio::time::Instant::now() + duration;
    loop {
        let at = ticks.tick().await;
        if at >= end {
            break;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let shop = shop.clone();
        tasks.spawn(async move {
            one_request(&shop).await;
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// One request of the mix: mostly browsing, some sign-ups, some orders.
async fn one_request(shop: &Shop) {
    let roll = rand::random_range(0..100);
    match roll {
        0..45 => {
            let sku = SKUS[rand::random_range(0..SKUS.len())];
            let url = format!("{}/api/products/{sku}", shop.gateway);
            timed(
                shop,
                Kind::ProductRead,
                Method::GET,
                &url,
                None,
                &[StatusCode::OK],
            )
            .await;
        }
        45..60 => {
            let url = format!("{}/api/products", shop.gateway);
            timed(
                shop,
                Kind::ProductList,
                Method::GET,
                &url,
                None,
                &[StatusCode::OK],
            )
            .await;
        }
        60..70 => create_user(shop).await,
        70..80 => {
            let user = pick(&shop.users);
            let url = format!("{}/api/users/{}", shop.gateway, user.unwrap_or_default());
            timed(
                shop,
                Kind::UserRead,
                Method::GET,
                &url,
                None,
                &[StatusCode::OK],
            )
            .await;
        }
        80..95 => place_order(shop).await,
        _ => match pick(&shop.orders) {
            Some(order) => {
                let url = format!("{}/api/orders/{order}", shop.gateway);
                timed(
                    shop,
                    Kind::OrderRead,
                    Method::GET,
                    &url,
                    None,
                    &[StatusCode::OK],
                )
                .await;
            }
            None => place_order(shop).await,
        },
    }
}

async fn create_user(shop: &Shop) {
    let n: u64 = rand::random();
    let body = json!({ "name": format!("Load {n:x}"), "email": format!("load-{n:x}@example.com") });
    let url = format!("{}/api/users", shop.gateway);
    let answer = timed(
        shop,
        Kind::UserCreate,
        Method::POST,
        &url,
        Some(body),
        &[StatusCode::CREATED],
    )
    .await;
    if let Some(id) = answer.and_then(|a| a["id"].as_str().map(str::to_owned)) {
        shop.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id);
    }
}

async fn place_order(shop: &Shop) {
    let Some(user) = pick(&shop.users) else {
        return create_user(shop).await;
    };
    let lines = rand::random_range(1..=2);
    let first = rand::random_range(0..SKUS.len());
    let items: Vec<Value> = (0..lines)
        .map(|i| json!({ "sku": SKUS[(first + i) % SKUS.len()], "quantity": rand::random_range(1..=3) }))
        .collect();
    let body = json!({ "user_id": user, "items": items });
    let url = format!("{}/api/orders", shop.gateway);
    let answer = timed(
        shop,
        Kind::OrderPlace,
        Method::POST,
        &url,
        Some(body),
        &[StatusCode::ACCEPTED],
    )
    .await;
    if let Some(id) = answer.and_then(|a| a["id"].as_str().map(str::to_owned)) {
        shop.orders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id);
    }
}

fn pick(list: &Mutex<Vec<String>>) -> Option<String> {
    let list = list.lock().unwrap_or_else(|p| p.into_inner());
    (!list.is_empty()).then(|| list[rand::random_range(0..list.len())].clone())
}

/// Sends one request, records its latency and whether the status was one of `expected`;
/// the answer when it was.
async fn timed(
    shop: &Shop,
    kind: Kind,
    method: Method,
    url: &str,
    body: Option<Value>,
    expected: &[StatusCode],
) -> Option<Value> {
    let started = Instant::now();
    let result = shop.http.send(method, url, body).await;
    let took = started.elapsed();
    match result {
        Ok((status, answer)) if expected.contains(&status) => {
            shop.stats.record(kind, took, None);
            Some(answer)
        }
        Ok((status, _)) => {
            shop.stats
                .record(kind, took, Some(status.as_u16().to_string()));
            None
        }
        Err(_) => {
            shop.stats.record(kind, took, Some("transport".into()));
            None
        }
    }
}

/// Rewrites one line on stderr every second: elapsed, rate, p50 / p99 and errors of that
/// second, orders placed so far.
async fn live_line(shop: &Shop, started: Instant) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.tick().await;
    let mut errors = 0;
    loop {
        every.tick().await;
        let w = shop.stats.take_window();
        errors += w.errors;
        let orders = shop.orders.lock().map_or(0, |o| o.len());
        eprint!(
            "\r\x1b[K{:>4} s  {:>6} req/s  p50 {:>7.1} ms  p99 {:>7.1} ms  errors {errors}  orders {orders}",
            started.elapsed().as_secs(),
            w.requests,
            w.p50.as_secs_f64() * 1000.0,
            w.p99.as_secs_f64() * 1000.0,
        );
    }
}

/// Waits (up to [`SETTLE_WITHIN`]) for the orders placed to be confirmed or cancelled, from
/// the orders service's list; counts each outcome.
async fn settle(shop: &Shop) -> anyhow::Result<Value> {
    let ours: std::collections::HashSet<String> = shop
        .orders
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    let give_up = Instant::now() + SETTLE_WITHIN;
    let url = format!("{}/api/orders", shop.gateway);
    loop {
        let (status, list) = shop.http.get(&url).await?;
        let mut counts =
            json!({ "placed": ours.len(), "confirmed": 0, "cancelled": 0, "pending": 0 });
        if status == StatusCode::OK {
            for order in list.as_array().into_iter().flatten() {
                if order["id"].as_str().is_some_and(|id| ours.contains(id))
                    && let Some(s) = order["status"].as_str()
                    && let Some(n) = counts.get_mut(s).and_then(|n| n.as_u64())
                {
                    counts[s] = json!(n + 1);
                }
            }
            let seen = counts["confirmed"].as_u64().unwrap_or(0)
                + counts["cancelled"].as_u64().unwrap_or(0);
            counts["pending"] = json!(ours.len() as u64 - seen.min(ours.len() as u64));
            if counts["pending"] == 0 || Instant::now() > give_up {
                return Ok(counts);
            }
        } else if Instant::now() > give_up {
            bail!("GET {url} answered {status} while waiting for the orders to settle");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_summary(s: &Value) {
    let ms = |v: &Value| {
        format!(
            "p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            v["p50"], v["p90"], v["p99"], v["max"]
        )
    };
    out::line(format_args!(
        "{} requests in {} s: {} req/s (target {}), {} errors {}",
        s["requests"],
        s["seconds"],
        s["requests_per_second"],
        s["target_rate"],
        s["errors"],
        s["errors_by_status"]
    ));
    out::line(format_args!("latency: {}", ms(&s["latency_ms"])));
    for (kind, v) in s["by_kind"].as_object().into_iter().flatten() {
        out::line(format_args!(
            "  {kind:<13} {:>6} requests, {} errors, {}",
            v["requests"],
            v["errors"],
            ms(v)
        ));
    }
    let o = &s["orders"];
    out::line(format_args!(
        "orders: {} placed, {} confirmed, {} cancelled (payment declined), {} still pending",
        o["placed"], o["confirmed"], o["cancelled"], o["pending"]
    ));
}
