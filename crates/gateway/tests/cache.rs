//! The response cache (RFC 9111) against a real local origin that counts its calls. Time is a
//! `ManualClock` the tests move by hand; nothing waits on the wall clock.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use common::{Running, get, send};
use flotilla_core::{Clock, ManualClock};
use http_body_util::Full;
use sha2::Digest;
use tokio::sync::{mpsc, watch};

/// The origin: answers by path and counts every call by `METHOD path`.
#[derive(Clone)]
struct Origin {
    calls: Arc<Mutex<HashMap<String, usize>>>,
    base: SystemTime,
    /// The gateway's clock: the origin's `Date` follows it, as a real origin's follows the
    /// real one.
    clock: ManualClock,
    release: watch::Receiver<bool>,
    arrived: mpsc::UnboundedSender<String>,
}

impl Origin {
    fn count(&self, key: &str) -> usize {
        self.calls.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

fn resp(status: u16, headers: &[(&str, String)], body: impl Into<AxumBody>) -> Response {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(body.into()).unwrap()
}

fn cc(v: &str) -> (&'static str, String) {
    ("cache-control", v.to_owned())
}

async fn answer(State(o): State<Origin>, req: Request) -> Response {
    let (req, _) = req.into_parts();
    let path = req.uri.path().to_owned();
    let key = format!("{} {path}", req.method);
    let n = {
        let mut calls = o.calls.lock().unwrap();
        let c = calls.entry(key.clone()).or_default();
        *c += 1;
        *c
    };
    let _ = o.arrived.send(key);
    let body = format!("{path} #{n}");
    let mut answer = route(&o, &req, &path, n, body).await;
    let date = httpdate::fmt_http_date(o.clock.now());
    let h = answer.headers_mut();
    if !h.contains_key("date") {
        h.insert("date", date.parse().unwrap());
    }
    answer
}

async fn route(
    o: &Origin,
    req: &http::request::Parts,
    path: &str,
    n: usize,
    body: String,
) -> Response {
    let header = |name: &str| {
        req.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    match path {
        "/shared" => resp(200, &[cc("max-age=1000, s-maxage=10")], body),
        "/expires" => {
            let date = httpdate::fmt_http_date(o.base);
            let expires = httpdate::fmt_http_date(o.base + Duration::from_secs(20));
            resp(200, &[("date", date), ("expires", expires)], body)
        }
        "/etag" if header("if-none-match").as_deref() == Some("\"v1\"") => {
            resp(304, &[cc("max-age=10"), ("etag", "\"v1\"".into())], "")
        }
        "/etag" => resp(200, &[cc("max-age=10"), ("etag", "\"v1\"".into())], body),
        "/cookie304" | "/nostore304" if header("if-none-match").is_some() => {
            let extra = if path == "/cookie304" {
                [cc("max-age=10"), ("set-cookie", "session=alice".into())]
            } else {
                [cc("no-store"), ("x-origin", "1".into())]
            };
            let mut h = vec![("etag", "\"v1\"".to_owned())];
            h.extend(extra);
            resp(304, &h, "")
        }
        "/cookie304" | "/nostore304" => {
            resp(200, &[cc("max-age=10"), ("etag", "\"v1\"".into())], body)
        }
        "/lang" => {
            let lang = header("accept-language").unwrap_or_default();
            let h = [cc("max-age=60"), ("vary", "Accept-Language".into())];
            resp(200, &h, format!("{lang} #{n}"))
        }
        "/zero" => resp(200, &[cc("max-age=0")], body),
        "/aged" => resp(200, &[cc("max-age=300"), ("age", "100".into())], body),
        "/age-list" => resp(200, &[cc("max-age=3600"), ("age", "0, 0".into())], body),
        "/star" => resp(200, &[cc("max-age=60"), ("vary", "*".into())], body),
        "/private" => resp(200, &[cc("private, max-age=60")], body),
        "/nostore" => resp(200, &[cc("no-store")], body),
        "/public" | "/keyed/public" => resp(200, &[cc("public, max-age=60")], body),
        "/swr" => resp(200, &[cc("max-age=10, stale-while-revalidate=60")], body),
        "/slow" => {
            let mut release = o.release.clone();
            release.wait_for(|r| *r).await.unwrap();
            resp(200, &[cc("max-age=60")], body)
        }
        "/big" => resp(200, &[cc("max-age=60")], vec![b'x'; 64 * 1024]),
        "/chunked" => {
            let chunks = (0..3).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 1024])));
            let stream = AxumBody::from_stream(futures_util::stream::iter(chunks));
            resp(200, &[cc("max-age=60")], stream)
        }
        "/make" => {
            let host = header("host").unwrap_or_default();
            let h = [
                ("location", "/loc/a?v=1".to_owned()),
                ("content-location", format!("http://{host}/loc/b")),
            ];
            resp(201, &h, "")
        }
        "/make-elsewhere" => {
            let h = [("location", "http://other.example/loc/c".to_owned())];
            resp(201, &h, "")
        }
        _ if req.method == http::Method::POST => resp(204, &[], ""),
        _ => resp(200, &[cc("max-age=60")], body),
    }
}

const API_KEY: &str = "key-of-the-team";

struct Setup {
    gw: Running,
    origin: Origin,
    clock: ManualClock,
    release: watch::Sender<bool>,
    arrivals: mpsc::UnboundedReceiver<String>,
    toml: String,
}

async fn setup() -> Setup {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
    let (release, release_rx) = watch::channel(false);
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let clock = ManualClock::new(base);
    let origin = Origin {
        calls: Arc::default(),
        base,
        clock: clock.clone(),
        release: release_rx,
        arrived,
    };
    let router = axum::Router::new()
        .fallback(answer)
        .with_state(origin.clone());
    let url = common::upstream(router).await;
    let key_hash = hex::encode(sha2::Sha256::digest(API_KEY));
    let toml = format!(
        "[cache]\nmax_bytes = 10485760\n\
         [[api_keys]]\nname = \"team\"\nhash = \"sha256:{key_hash}\"\n\
         [[upstreams]]\nname = \"o\"\nurls = [\"{url}\"]\n\
         [[routes]]\nname = \"keyed\"\nprefix = \"/keyed\"\nupstream = \"o\"\n\
         auth = {{ api_key = true }}\ncache = {{ enabled = true }}\n\
         [[routes]]\nname = \"lenient\"\nprefix = \"/lenient\"\nupstream = \"o\"\n\
         cache = {{ enabled = true, max_stale = \"30s\" }}\n\
         [[routes]]\nname = \"cached\"\nprefix = \"/\"\nupstream = \"o\"\n\
         cache = {{ enabled = true, max_entry_bytes = 2048 }}\n"
    );
    let gw = common::gateway_with_clock(&toml, Arc::new(clock.clone())).await;
    Setup {
        gw,
        origin,
        clock,
        release,
        arrivals,
        toml,
    }
}

fn status_of(r: &common::Resp) -> &str {
    r.headers
        .get("cache-status")
        .map_or("", |v| v.to_str().unwrap())
}

fn age_of(r: &common::Resp) -> u64 {
    r.headers["age"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_fresh_response_is_served_from_the_cache_until_max_age_passes() {
    let s = setup().await;
    let first = get(&s.gw, "/fresh", &[]).await;
    assert_eq!(first.body, "/fresh #1");
    assert_eq!(status_of(&first), "flotilla; fwd=miss; stored");
    assert!(!first.headers.contains_key("age"));
    s.clock.advance(Duration::from_secs(30));
    let hit = get(&s.gw, "/fresh", &[]).await;
    assert_eq!(hit.body, "/fresh #1");
    assert!(
        status_of(&hit).starts_with("flotilla; hit; ttl="),
        "{}",
        status_of(&hit)
    );
    assert!(
        (30..=31).contains(&age_of(&hit)),
        "Age counts resident time"
    );
    s.clock.advance(Duration::from_secs(31));
    let refetched = get(&s.gw, "/fresh", &[]).await;
    assert_eq!(refetched.body, "/fresh #2");
    assert_eq!(s.origin.count("GET /fresh"), 2);
}

#[tokio::test]
async fn s_maxage_takes_precedence_over_max_age() {
    let s = setup().await;
    get(&s.gw, "/shared", &[]).await;
    s.clock.advance(Duration::from_secs(9));
    assert_eq!(get(&s.gw, "/shared", &[]).await.body, "/shared #1");
    s.clock.advance(Duration::from_secs(2));
    assert_eq!(get(&s.gw, "/shared", &[]).await.body, "/shared #2");
}

#[tokio::test]
async fn expires_minus_date_sets_the_lifetime() {
    let s = setup().await;
    get(&s.gw, "/expires", &[]).await;
    s.clock.advance(Duration::from_secs(19));
    assert_eq!(get(&s.gw, "/expires", &[]).await.body, "/expires #1");
    s.clock.advance(Duration::from_secs(2));
    assert_eq!(get(&s.gw, "/expires", &[]).await.body, "/expires #2");
}

#[tokio::test]
async fn a_stale_entry_is_revalidated_with_its_etag_and_a_304_refreshes_it() {
    let s = setup().await;
    get(&s.gw, "/etag", &[]).await;
    s.clock.advance(Duration::from_secs(11));
    let revalidated = get(&s.gw, "/etag", &[]).await;
    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.body, "/etag #1", "the stored body is served");
    assert_eq!(
        status_of(&revalidated),
        "flotilla; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(s.origin.count("GET /etag"), 2);
    s.clock.advance(Duration::from_secs(5));
    let hit = get(&s.gw, "/etag", &[]).await;
    assert!(status_of(&hit).contains("hit"), "fresh again after the 304");
    assert_eq!(s.origin.count("GET /etag"), 2);
}

#[tokio::test]
async fn a_cookie_set_on_a_304_reaches_only_the_client_that_revalidated() {
    let s = setup().await;
    get(&s.gw, "/cookie304", &[]).await;
    s.clock.advance(Duration::from_secs(11));
    let alice = get(&s.gw, "/cookie304", &[]).await;
    assert_eq!(alice.headers["set-cookie"], "session=alice");
    assert_eq!(s.origin.count("GET /cookie304"), 2);
    let bob = get(&s.gw, "/cookie304", &[]).await;
    assert!(status_of(&bob).contains("hit"), "{}", status_of(&bob));
    assert!(
        !bob.headers.contains_key("set-cookie"),
        "the shared entry must not carry alice's cookie"
    );
}

#[tokio::test]
async fn a_304_marked_no_store_drops_the_stored_entry() {
    let s = setup().await;
    get(&s.gw, "/nostore304", &[]).await;
    s.clock.advance(Duration::from_secs(11));
    let revalidated = get(&s.gw, "/nostore304", &[]).await;
    assert_eq!(revalidated.body, "/nostore304 #1");
    assert_eq!(
        status_of(&revalidated),
        "flotilla; fwd=stale; fwd-status=304"
    );
    let next = get(&s.gw, "/nostore304", &[]).await;
    assert_eq!(next.body, "/nostore304 #3", "nothing stored any more");
    assert_eq!(s.origin.count("GET /nostore304"), 3);
}

#[tokio::test]
async fn a_client_etag_matching_the_stored_one_gets_a_304_from_the_cache() {
    let s = setup().await;
    get(&s.gw, "/etag", &[]).await;
    let nm = get(&s.gw, "/etag", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(nm.status, 304);
    assert!(nm.body.is_empty());
    assert_eq!(nm.headers["etag"], "\"v1\"");
    let other = get(&s.gw, "/etag", &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(other.status, 200);
    assert_eq!(s.origin.count("GET /etag"), 1, "both answered by the cache");
}

#[tokio::test]
async fn a_client_conditional_miss_still_fills_the_cache() {
    let s = setup().await;
    let nm = get(&s.gw, "/etag", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(
        nm.status, 304,
        "evaluated on the full response the cache fetched"
    );
    let full = get(&s.gw, "/etag", &[]).await;
    assert_eq!(full.body, "/etag #1");
    assert_eq!(s.origin.count("GET /etag"), 1);
}

#[tokio::test]
async fn vary_stores_one_variant_per_header_value() {
    let s = setup().await;
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(get(&s.gw, "/lang", &en).await.body, "en #1");
    assert_eq!(get(&s.gw, "/lang", &fr).await.body, "fr #2");
    assert_eq!(get(&s.gw, "/lang", &en).await.body, "en #1");
    assert_eq!(get(&s.gw, "/lang", &fr).await.body, "fr #2");
    assert_eq!(s.origin.count("GET /lang"), 2);
}

#[tokio::test]
async fn vary_star_private_and_no_store_are_never_stored() {
    let s = setup().await;
    for path in ["/star", "/private", "/nostore"] {
        get(&s.gw, path, &[]).await;
        let again = get(&s.gw, path, &[]).await;
        assert_eq!(status_of(&again), "flotilla; fwd=miss", "{path}");
        assert_eq!(s.origin.count(&format!("GET {path}")), 2, "{path}");
    }
    get(&s.gw, "/fresh", &[("cache-control", "no-store")]).await;
    get(&s.gw, "/fresh", &[]).await;
    assert_eq!(s.origin.count("GET /fresh"), 2, "request no-store");
}

#[tokio::test]
async fn authorized_requests_are_stored_only_when_the_response_is_public() {
    let s = setup().await;
    let auth = [("authorization", "Bearer secret-of-alice")];
    get(&s.gw, "/fresh", &auth).await;
    let bob = get(
        &s.gw,
        "/fresh",
        &[("authorization", "Bearer secret-of-bob")],
    )
    .await;
    assert_eq!(
        bob.body, "/fresh #2",
        "max-age alone does not allow sharing"
    );
    get(&s.gw, "/public", &auth).await;
    assert_eq!(get(&s.gw, "/public", &auth).await.body, "/public #1");
}

#[tokio::test]
async fn fifty_concurrent_misses_make_one_upstream_call() {
    let mut s = setup().await;
    let gw = Arc::new(s.gw);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { get(&gw, "/slow", &[]).await })
        })
        .collect();
    assert_eq!(s.arrivals.recv().await.unwrap(), "GET /slow");
    // Hold the origin until every other request is waiting on the first one.
    let admin = gw.gateway.admin_router();
    let all_waiting = async {
        while admin_json(&admin, "GET", "/cache", "").await["collapsed"] != 49 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all_waiting)
        .await
        .expect("the 49 other requests never all waited on the first one");
    s.release.send(true).unwrap();
    let mut collapsed = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.body, "/slow #1");
        collapsed += usize::from(status_of(&r).contains("collapsed"));
    }
    assert_eq!(collapsed, 49);
    assert_eq!(s.origin.count("GET /slow"), 1);
}

#[tokio::test]
async fn a_body_over_the_entry_limit_streams_through_unstored() {
    let s = setup().await;
    for path in ["/big", "/chunked"] {
        let first = get(&s.gw, path, &[]).await;
        let expected = if path == "/big" { 64 * 1024 } else { 3 * 1024 };
        assert_eq!(first.body.len(), expected, "{path} arrives whole");
        assert_eq!(status_of(&first), "flotilla; fwd=miss", "{path}");
        get(&s.gw, path, &[]).await;
        assert_eq!(s.origin.count(&format!("GET {path}")), 2, "{path}");
    }
}

#[tokio::test]
async fn an_unsafe_request_invalidates_the_stored_target() {
    let s = setup().await;
    get(&s.gw, "/item", &[]).await;
    assert_eq!(get(&s.gw, "/item", &[]).await.body, "/item #1");
    let post = http::Request::post("/item")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let posted = send(&s.gw, post).await;
    assert_eq!(posted.status, 204);
    assert_eq!(status_of(&posted), "flotilla; fwd=method");
    assert_eq!(get(&s.gw, "/item", &[]).await.body, "/item #2");
}

#[tokio::test]
async fn an_unsafe_request_invalidates_its_same_origin_location_and_content_location() {
    let s = setup().await;
    for path in ["/loc/a?v=1", "/loc/b", "/loc/c"] {
        get(&s.gw, path, &[]).await;
        assert!(
            get(&s.gw, path, &[]).await.body.ends_with(b"#1"),
            "{path} stored"
        );
    }
    let post = |path: &str| {
        http::Request::post(path)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    assert_eq!(send(&s.gw, post("/make")).await.status, 201);
    assert_eq!(send(&s.gw, post("/make-elsewhere")).await.status, 201);
    assert_eq!(get(&s.gw, "/loc/a?v=1", &[]).await.body, "/loc/a #2");
    assert_eq!(get(&s.gw, "/loc/b", &[]).await.body, "/loc/b #2");
    let other_origin = get(&s.gw, "/loc/c", &[]).await;
    assert_eq!(
        other_origin.body, "/loc/c #1",
        "another origin's URL is not ours to drop"
    );
}

#[tokio::test]
async fn only_if_cached_answers_504_on_a_miss_and_serves_a_stored_response() {
    let s = setup().await;
    let only = [("cache-control", "only-if-cached")];
    let miss = get(&s.gw, "/fresh", &only).await;
    assert_eq!(miss.status, 504);
    assert_eq!(miss.headers["content-type"], "application/problem+json");
    assert_eq!(s.origin.count("GET /fresh"), 0);
    get(&s.gw, "/fresh", &[]).await;
    assert_eq!(get(&s.gw, "/fresh", &only).await.body, "/fresh #1");
}

#[tokio::test]
async fn request_no_cache_forces_revalidation() {
    let s = setup().await;
    get(&s.gw, "/fresh", &[]).await;
    let forced = get(&s.gw, "/fresh", &[("cache-control", "no-cache")]).await;
    assert_eq!(forced.body, "/fresh #2");
    assert!(status_of(&forced).starts_with("flotilla; fwd=request"));
    let zero = get(&s.gw, "/fresh", &[("cache-control", "max-age=0")]).await;
    assert_eq!(zero.body, "/fresh #3");
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once_in_the_background() {
    let mut s = setup().await;
    get(&s.gw, "/swr", &[]).await;
    assert_eq!(s.arrivals.recv().await.unwrap(), "GET /swr");
    s.clock.advance(Duration::from_secs(20));
    let stale = get(&s.gw, "/swr", &[]).await;
    assert_eq!(stale.body, "/swr #1");
    assert!(
        status_of(&stale).contains("hit; ttl=-"),
        "{}",
        status_of(&stale)
    );
    assert_eq!(
        s.arrivals.recv().await.unwrap(),
        "GET /swr",
        "background fetch"
    );
    // The refreshed entry is stored right after the origin answers; poll until it shows.
    let refreshed = async {
        loop {
            let r = get(&s.gw, "/swr", &[]).await;
            if r.body == "/swr #2" {
                return r;
            }
            tokio::task::yield_now().await;
        }
    };
    let r = tokio::time::timeout(Duration::from_secs(30), refreshed)
        .await
        .expect("the background revalidation never stored the refreshed response");
    assert!(status_of(&r).contains("hit"));
    assert_eq!(s.origin.count("GET /swr"), 2);
}

async fn admin_json(
    admin: &axum::Router,
    method: &str,
    path: &str,
    body: &str,
) -> serde_json::Value {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(admin.clone(), req)
        .await
        .unwrap();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn admin_purge_by_prefix_and_all_and_stats() {
    let s = setup().await;
    get(&s.gw, "/a/x", &[]).await;
    get(&s.gw, "/b/y", &[]).await;
    let admin = s.gw.gateway.admin_router();
    let stats = admin_json(&admin, "GET", "/cache", "").await;
    assert_eq!(stats["entries"], 2);
    assert!(stats["bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["misses"], 2);
    let purged = admin_json(&admin, "POST", "/cache/purge", r#"{"prefix":"/a"}"#).await;
    assert_eq!(purged["purged"], true);
    assert_eq!(get(&s.gw, "/a/x", &[]).await.body, "/a/x #2");
    assert_eq!(get(&s.gw, "/b/y", &[]).await.body, "/b/y #1");
    let bad = admin_json(&admin, "POST", "/cache/purge", r#"{"prefix":"a"}"#).await;
    assert_eq!(bad["status"], 400);
    admin_json(&admin, "POST", "/cache/purge", "").await;
    assert_eq!(get(&s.gw, "/b/y", &[]).await.body, "/b/y #2");
    let by_route = r#"{"route":"cached"}"#;
    admin_json(&admin, "POST", "/cache/purge", by_route).await;
    assert_eq!(get(&s.gw, "/b/y", &[]).await.body, "/b/y #3");
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get_but_never_the_reverse() {
    let s = setup().await;
    let head = |path: &'static str| {
        let req = http::Request::head(path)
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(&s.gw, req)
    };
    get(&s.gw, "/fresh", &[]).await;
    let from_get = head("/fresh").await;
    assert_eq!(from_get.status, 200);
    assert!(from_get.body.is_empty());
    assert_eq!(
        from_get.headers["content-length"], "9",
        "the stored GET's length"
    );
    assert!(status_of(&from_get).contains("hit"));
    assert_eq!(s.origin.count("HEAD /fresh"), 0);
    head("/item").await;
    assert_eq!(
        get(&s.gw, "/item", &[]).await.body,
        "/item #1",
        "not the HEAD's"
    );
}

#[tokio::test]
async fn a_reload_keeps_unchanged_routes_entries_and_drops_changed_ones() {
    let s = setup().await;
    get(&s.gw, "/fresh", &[]).await;
    let same = flotilla_gateway::GatewayOptions::from_toml(&s.toml).unwrap();
    s.gw.gateway.reload(same).unwrap();
    assert_eq!(get(&s.gw, "/fresh", &[]).await.body, "/fresh #1");
    let changed = s.toml.replace(
        "upstream = \"o\"\n",
        "upstream = \"o\"\nresponse_headers = { set = { x-v = \"2\" } }\n",
    );
    assert_ne!(changed, s.toml);
    let opts = flotilla_gateway::GatewayOptions::from_toml(&changed).unwrap();
    s.gw.gateway.reload(opts).unwrap();
    let after = get(&s.gw, "/fresh", &[]).await;
    assert_eq!(after.body, "/fresh #2");
    assert_eq!(after.headers["x-v"], "2");
}

#[tokio::test]
async fn cache_metrics_count_per_route() {
    let s = setup().await;
    get(&s.gw, "/fresh", &[]).await;
    get(&s.gw, "/fresh", &[]).await;
    get(&s.gw, "/etag", &[]).await;
    s.clock.advance(Duration::from_secs(11));
    get(&s.gw, "/etag", &[]).await;
    let mut registry = prometheus_client::registry::Registry::default();
    s.gw.gateway.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let value = |name: &str| -> f64 {
        let prefix = format!("{name}{{route=\"cached\"}} ");
        let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap();
        line[prefix.len()..].parse().unwrap()
    };
    assert_eq!(value("gateway_cache_hits_total"), 1.0);
    assert_eq!(value("gateway_cache_misses_total"), 3.0);
    assert_eq!(value("gateway_cache_revalidations_total"), 1.0);
    assert_eq!(value("gateway_cache_stale_total"), 0.0);
    assert!(value("gateway_cache_stored_bytes") > 0.0);
}

#[tokio::test]
async fn an_upstream_age_counts_toward_freshness_and_is_passed_on() {
    let s = setup().await;
    let first = get(&s.gw, "/aged", &[]).await;
    assert_eq!(age_of(&first), 100);
    s.clock.advance(Duration::from_secs(150));
    let hit = get(&s.gw, "/aged", &[]).await;
    assert_eq!(age_of(&hit), 250);
    assert_eq!(status_of(&hit), "flotilla; hit; ttl=50");
    s.clock.advance(Duration::from_secs(50));
    assert_eq!(
        get(&s.gw, "/aged", &[]).await.body,
        "/aged #2",
        "300 s old: refetched"
    );
}

#[tokio::test]
async fn a_route_with_auth_stores_only_responses_marked_public() {
    let s = setup().await;
    let key = [("x-api-key", API_KEY)];
    get(&s.gw, "/keyed/private-data", &key).await;
    let again = get(&s.gw, "/keyed/private-data", &key).await;
    assert_eq!(
        again.body, "/keyed/private-data #2",
        "API-key callers do not share it"
    );
    get(&s.gw, "/keyed/public", &key).await;
    assert_eq!(
        get(&s.gw, "/keyed/public", &key).await.body,
        "/keyed/public #1"
    );
    let anonymous = get(&s.gw, "/keyed/public", &[]).await;
    assert_eq!(anonymous.status, 401, "auth runs before the cache");
}

#[tokio::test]
async fn a_response_never_fresh_and_without_a_validator_is_not_stored() {
    let s = setup().await;
    let first = get(&s.gw, "/zero", &[]).await;
    assert_eq!(status_of(&first), "flotilla; fwd=miss");
    assert_eq!(get(&s.gw, "/zero", &[]).await.body, "/zero #2");
}

#[tokio::test]
async fn a_request_cookie_is_treated_like_authorization() {
    let s = setup().await;
    let cookie = [("cookie", "session=alice")];
    let alice = get(&s.gw, "/fresh", &cookie).await;
    assert_eq!(status_of(&alice), "flotilla; fwd=miss");
    let bob = get(&s.gw, "/fresh", &[]).await;
    assert_eq!(bob.body, "/fresh #2", "alice's response was not shared");
    get(&s.gw, "/public", &cookie).await;
    assert_eq!(get(&s.gw, "/public", &[]).await.body, "/public #1");
}

#[tokio::test]
async fn a_client_max_stale_gets_nothing_stale_unless_the_route_allows_it() {
    let s = setup().await;
    get(&s.gw, "/fresh", &[]).await;
    s.clock.advance(Duration::from_secs(70));
    let r = get(&s.gw, "/fresh", &[("cache-control", "max-stale")]).await;
    assert_eq!(r.body, "/fresh #2", "max_stale defaults to 0s");

    get(&s.gw, "/lenient/a", &[]).await;
    s.clock.advance(Duration::from_secs(80));
    let any = [("cache-control", "max-stale")];
    let within = get(&s.gw, "/lenient/a", &any).await;
    assert_eq!(
        within.body, "/lenient/a #1",
        "20s stale, the route allows 30s"
    );
    s.clock.advance(Duration::from_secs(11));
    let beyond = get(&s.gw, "/lenient/a", &any).await;
    assert_eq!(
        beyond.body, "/lenient/a #2",
        "the route's cap wins over the client's"
    );
}

#[tokio::test]
async fn the_cache_keys_on_the_port_as_well_as_the_host() {
    let s = setup().await;
    let one = get(&s.gw, "/fresh", &[("host", "api.example:8001")]).await;
    assert_eq!(one.body, "/fresh #1");
    let other = get(&s.gw, "/fresh", &[("host", "api.example:8002")]).await;
    assert_eq!(other.body, "/fresh #2", "another port is another origin");
    let again = get(&s.gw, "/fresh", &[("host", "api.example:8001")]).await;
    assert_eq!(again.body, "/fresh #1");
}

#[tokio::test]
async fn an_age_that_is_not_one_delta_seconds_is_stored_but_not_served_as_fresh() {
    let s = setup().await;
    let first = get(&s.gw, "/age-list", &[]).await;
    assert_eq!(status_of(&first), "flotilla; fwd=miss; stored");
    assert_eq!(
        first.headers["age"], "2147483648",
        "the oldest age, RFC 9111 §1.2.2"
    );
    let again = get(&s.gw, "/age-list", &[]).await;
    assert_eq!(again.body, "/age-list #2", "{}", status_of(&again));
    assert_eq!(s.origin.count("GET /age-list"), 2);
}

#[tokio::test]
async fn a_range_is_served_from_a_stored_complete_response_and_otherwise_goes_through() {
    let s = setup().await;
    let ranged = [("range", "bytes=0-1")];
    let through = get(&s.gw, "/parts", &ranged).await;
    assert_eq!(
        status_of(&through),
        "flotilla; fwd=bypass",
        "nothing stored yet"
    );
    assert_eq!(through.body, "/parts #1");
    get(&s.gw, "/parts", &[]).await;
    assert_eq!(
        s.origin.count("GET /parts"),
        2,
        "the ranged answer was not stored"
    );

    let part = get(&s.gw, "/parts", &ranged).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, "/p");
    assert_eq!(part.headers["content-range"], "bytes 0-1/9");
    assert!(
        status_of(&part).starts_with("flotilla; hit"),
        "{}",
        status_of(&part)
    );
    let suffix = get(&s.gw, "/parts", &[("range", "bytes=-2")]).await;
    assert_eq!((suffix.status, &suffix.body[..]), (206, &b"#2"[..]));
    let beyond = get(&s.gw, "/parts", &[("range", "bytes=50-")]).await;
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.headers["content-range"], "bytes */9");
    let several = get(&s.gw, "/parts", &[("range", "bytes=0-1,4-5")]).await;
    assert_eq!(
        (several.status, &several.body[..]),
        (200, &b"/parts #2"[..])
    );
    assert_eq!(
        s.origin.count("GET /parts"),
        2,
        "all answered from the store"
    );

    s.clock.advance(Duration::from_secs(61));
    let stale = get(&s.gw, "/parts", &ranged).await;
    assert_eq!(
        status_of(&stale),
        "flotilla; fwd=bypass",
        "a stale entry is not served"
    );
    assert_eq!(s.origin.count("GET /parts"), 3);
}
