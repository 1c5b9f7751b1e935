//! Upstreams: where a route's requests go, and which instance takes the next one.
//!
//! Instances come from static URLs or from a [`Discovery`] watch (a memory read per request,
//! re-filtered only when the service's revision changes). Balancing is round robin over the
//! instances whose breaker admits traffic.
//!
//! The breaker here is a small consecutive-failure breaker per instance, kept in this crate
//! until `flotilla-resilience` provides one the gateway can share with the SDK.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::ServiceName;
use flotilla_discovery::{Discovery, Query, ServiceSet};
use http::uri::{Authority, Scheme};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Error;
use crate::config::UpstreamConfig;

/// One instance to send requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Instance id (the URL for static upstreams).
    pub id: String,
    /// `host:port`.
    pub authority: Authority,
}

#[derive(Debug)]
enum Source {
    Static(Arc<[Target]>),
    Discovery {
        rx: watch::Receiver<ServiceSet>,
        query: Query,
        cache: Mutex<(u64, Arc<[Target]>)>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum BreakerState {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Default)]
struct Breaker {
    state: BreakerState,
    failures: u32,
    open_until: Option<Instant>,
}

/// A compiled upstream.
#[derive(Debug)]
pub struct Upstream {
    /// Its configured name.
    pub name: String,
    source: Source,
    next: AtomicUsize,
    threshold: u32,
    open_for: Duration,
    breakers: Mutex<HashMap<String, Breaker>>,
}

impl Upstream {
    /// Compiles `cfg` (at config key `key`), subscribing to discovery when it names a service.
    pub fn build(
        cfg: &UpstreamConfig,
        key: &str,
        discovery: &dyn Discovery,
    ) -> Result<Self, Error> {
        if cfg.name.is_empty() {
            return Err(Error::config(
                format!("{key}.name"),
                "an upstream needs a name",
            ));
        }
        let source = match (&cfg.service, cfg.urls.is_empty()) {
            (Some(s), true) => discovery_source(cfg, s, key, discovery)?,
            (None, false) => Source::Static(static_targets(&cfg.urls, key)?),
            _ => {
                return Err(Error::config(
                    key,
                    "exactly one of `service` or `urls` is required",
                ));
            }
        };
        Ok(Self {
            name: cfg.name.clone(),
            source,
            next: AtomicUsize::new(0),
            threshold: cfg.breaker_failures.unwrap_or(5),
            open_for: cfg.breaker_open_for.unwrap_or(Duration::from_secs(10)),
            breakers: Mutex::new(HashMap::new()),
        })
    }

    /// Every instance currently known (routable by the upstream's query).
    pub fn targets(&self) -> Arc<[Target]> {
        match &self.source {
            Source::Static(t) => t.clone(),
            Source::Discovery { rx, query, cache } => {
                let set = rx.borrow();
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.0 != set.revision || set.revision == 0 {
                    cache.1 = set.select(query).filter_map(endpoint_target).collect();
                    cache.0 = set.revision;
                }
                cache.1.clone()
            }
        }
    }

    /// The next instance whose breaker admits a request, round robin; `Unavailable` when there
    /// is none (no instance, or every breaker open).
    pub fn pick(&self) -> Result<Target, Error> {
        let targets = self.targets();
        if targets.is_empty() {
            return Err(Error::Unavailable("no healthy upstream instance"));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..targets.len() {
            let t = &targets[(start + i) % targets.len()];
            if self.admit(&t.id) {
                return Ok(t.clone());
            }
        }
        Err(Error::Unavailable(
            "circuit breaker open for every upstream instance",
        ))
    }

    fn admit(&self, id: &str) -> bool {
        if self.threshold == 0 {
            return true;
        }
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = map.get_mut(id) else {
            return true;
        };
        match b.state {
            BreakerState::Closed => true,
            BreakerState::HalfOpen => false,
            BreakerState::Open if b.open_until.is_some_and(|t| Instant::now() >= t) => {
                b.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open => false,
        }
    }

    /// Records the outcome of a request to `id`; failures past the threshold open its breaker.
    pub fn record(&self, id: &str, success: bool) {
        if self.threshold == 0 {
            return;
        }
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        if success {
            map.remove(id);
            return;
        }
        let b = map.entry(id.to_owned()).or_default();
        b.failures += 1;
        if b.state == BreakerState::HalfOpen || b.failures >= self.threshold {
            b.state = BreakerState::Open;
            b.open_until = Some(Instant::now() + self.open_for);
        }
    }

    /// Instances and their breaker state, for the admin API.
    pub fn describe(&self) -> serde_json::Value {
        let map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let instances: Vec<_> = self
            .targets()
            .iter()
            .map(|t| {
                let b = map.get(&t.id);
                serde_json::json!({
                    "id": t.id,
                    "address": t.authority.as_str(),
                    "breaker": b.map(|b| b.state).unwrap_or_default(),
                    "consecutive_failures": b.map_or(0, |b| b.failures),
                })
            })
            .collect();
        serde_json::json!({ "name": self.name, "instances": instances })
    }
}

fn discovery_source(
    cfg: &UpstreamConfig,
    service: &str,
    key: &str,
    discovery: &dyn Discovery,
) -> Result<Source, Error> {
    let name = ServiceName::new(service)
        .map_err(|e| Error::config(format!("{key}.service"), e.to_string()))?;
    let mut query = Query::default();
    query.version = cfg.version.clone();
    query.tags = cfg.tags.clone();
    let query = query
        .validated()
        .map_err(|e| Error::config(format!("{key}.{}", e.field), e.reason))?;
    Ok(Source::Discovery {
        rx: discovery.watch(&name),
        query,
        cache: Mutex::new((u64::MAX, Arc::from([]))),
    })
}

fn endpoint_target(e: &flotilla_discovery::Endpoint) -> Option<Target> {
    // Only plain HTTP upstreams are supported; TLS instances are skipped rather than sent
    // cleartext.
    if e.instance.scheme != flotilla_core::Scheme::Http {
        return None;
    }
    let base = e.instance.base_url();
    let authority = base.strip_prefix("http://")?.parse().ok()?;
    Some(Target {
        id: e.instance.id.clone(),
        authority,
    })
}

fn static_targets(urls: &[String], key: &str) -> Result<Arc<[Target]>, Error> {
    urls.iter()
        .enumerate()
        .map(|(i, u)| {
            let bad = |r: &str| Error::config(format!("{key}.urls[{i}]"), format!("{u:?}: {r}"));
            let uri: http::Uri = u.parse().map_err(|_| bad("not a URL"))?;
            if uri.scheme() != Some(&Scheme::HTTP) {
                return Err(bad("only http:// upstreams are supported"));
            }
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            if path != "/" {
                return Err(bad("a base URL has no path; use a rewrite to add one"));
            }
            let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
            Ok(Target {
                id: u.clone(),
                authority,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_discovery::StaticDiscovery;

    fn fixed(urls: &[&str], threshold: u32) -> Upstream {
        let cfg = UpstreamConfig {
            name: "u".into(),
            urls: urls.iter().map(|s| s.to_string()).collect(),
            breaker_failures: Some(threshold),
            ..Default::default()
        };
        Upstream::build(&cfg, "upstreams[0]", &StaticDiscovery::new()).unwrap()
    }

    #[test]
    fn round_robin_visits_every_instance() {
        let u = fixed(&["http://127.0.0.1:1", "http://127.0.0.1:2"], 5);
        let a = u.pick().unwrap().id;
        let b = u.pick().unwrap().id;
        assert_ne!(a, b);
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_threshold_and_half_opens_after_the_wait() {
        let u = fixed(&["http://127.0.0.1:1"], 2);
        u.record("http://127.0.0.1:1", false);
        assert!(u.pick().is_ok());
        u.record("http://127.0.0.1:1", false);
        assert!(matches!(u.pick(), Err(Error::Unavailable(_))));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(u.pick().is_ok(), "one probe is let through");
        assert!(u.pick().is_err(), "only one probe while half-open");
        u.record("http://127.0.0.1:1", true);
        assert!(u.pick().is_ok());
    }

    #[test]
    fn bad_urls_name_the_key() {
        let cfg = UpstreamConfig {
            name: "u".into(),
            urls: vec!["https://x".into()],
            ..Default::default()
        };
        let e = Upstream::build(&cfg, "upstreams[3]", &StaticDiscovery::new()).unwrap_err();
        assert!(e.to_string().contains("upstreams[3].urls[0]"), "{e}");
    }
}
