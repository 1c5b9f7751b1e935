//! Upstreams: where a route's requests go, and which instance takes the next one.
//!
//! Instances come from static URLs or from a [`Discovery`] watch (a memory read per request,
//! re-filtered only when the service's revision changes). Balancing is round robin over the
//! instances chosen by the upstream's `flotilla-resilience` [`Balancer`] (peak-EWMA P2C by
//! default, with passive outlier ejection), skipping instances whose breaker is open.
//!
//! The breaker here is a small consecutive-failure breaker per instance: the resilience
//! crate's breaker is a tower layer around a whole service, while the gateway needs to skip one
//! instance and answer 503 only when every instance is refused.
//!
//! What counts as a failure (for the breaker and the balancer's outlier ejection alike) is
//! the gateway's own failure to get an answer: connect errors, resets, timeouts — as Envoy's
//! gateway-failure detection. An answer counts only when its status is in the upstream's
//! `breaker_statuses`: an instance answering 503 on one route because a dependency is down
//! is still the only one serving every other route, and refusing it all traffic would turn
//! one dependency's outage into an outage of everything behind the upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::{ServiceInstance, ServiceName};
use flotilla_discovery::{Discovery, Query, ServiceSet};
use flotilla_resilience::balance::{BalanceConfig, Balancer, Pick};
use http::uri::{Authority, Scheme};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Error;
use crate::config::{ServerOptions, UpstreamConfig};
use crate::tls::UpstreamClient;

/// One instance to send requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Instance id (the URL for static upstreams).
    pub id: String,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
    /// The instance, as the balancer sees it.
    pub instance: ServiceInstance,
}

#[derive(Debug)]
enum Source {
    Static(Targets),
    Discovery {
        rx: watch::Receiver<ServiceSet>,
        query: Query,
        cache: Mutex<(u64, Targets)>,
    },
}

/// The instances of an upstream. Each is behind its own `Arc` so choosing one for a request
/// is a reference-count increment, not a copy of its id, URL parts and metadata.
pub type Targets = Arc<[Arc<Target>]>;

/// How one attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The instance answered with this status.
    Answered(http::StatusCode),
    /// No answer: connect error, reset or timeout.
    Failed,
    /// The attempt failed on the client's side (a malformed or oversized request body): it
    /// says nothing about the instance, so it is not counted at all — else one hostile
    /// client could open the breaker for everyone.
    ClientFault,
}

/// An instance chosen for one attempt; report how it went with [`Upstream::record`].
#[derive(Debug)]
pub struct Chosen {
    /// Where to send the attempt.
    pub target: Arc<Target>,
    /// The balancer's ticket; absent when the instance was chosen by the fallback scan.
    pick: Option<Pick>,
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
    balancer: Balancer,
    threshold: u32,
    open_for: Duration,
    /// Answers that count as failures (`breaker_statuses`).
    failure_statuses: Box<[http::StatusCode]>,
    breakers: Mutex<HashMap<String, Breaker>>,
    /// A client of its own when the upstream has a `tls` table (private CA, SNI override).
    client: Option<UpstreamClient>,
}

impl Upstream {
    /// Compiles `cfg` (at config key `key`), subscribing to discovery when it names a service;
    /// `server` sizes the connection pool of an upstream with its own TLS settings.
    pub fn build(
        cfg: &UpstreamConfig,
        key: &str,
        discovery: &dyn Discovery,
        server: &ServerOptions,
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
        let config = BalanceConfig {
            strategy: cfg.balance,
            ..BalanceConfig::default()
        };
        let client = match &cfg.tls {
            Some(tls) => Some(crate::tls::tls_client(server, tls, &format!("{key}.tls"))?),
            None => None,
        };
        Ok(Self {
            name: cfg.name.clone(),
            source,
            balancer: Balancer::new(&cfg.name, config, None),
            threshold: cfg.breaker_failures.unwrap_or(5),
            open_for: cfg.breaker_open_for.unwrap_or(Duration::from_secs(10)),
            failure_statuses: failure_statuses(&cfg.breaker_statuses, key)?,
            breakers: Mutex::new(HashMap::new()),
            client,
        })
    }

    /// The upstream's own client, when its `tls` table needs one; else the shared client.
    pub(crate) fn client<'a>(&'a self, shared: &'a UpstreamClient) -> &'a UpstreamClient {
        self.client.as_ref().unwrap_or(shared)
    }

    /// Every instance currently known (routable by the upstream's query).
    pub fn targets(&self) -> Targets {
        let (revision, targets) = match &self.source {
            Source::Static(t) => (0, t.clone()),
            Source::Discovery { rx, query, cache } => {
                let set = rx.borrow();
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.0 != set.revision {
                    cache.1 = set
                        .select(query)
                        .filter_map(endpoint_target)
                        .map(Arc::new)
                        .collect();
                    cache.0 = set.revision;
                }
                (cache.0, cache.1.clone())
            }
        };
        // A no-op unless the revision changed; instances that stay keep their statistics.
        self.balancer
            .update(revision, targets.iter().map(|t| &t.instance));
        targets
    }

    /// An instance chosen by the balancer whose breaker admits a request (`key` drives
    /// consistent hashing), avoiding the `tried` instance ids while another one is available;
    /// `Unavailable` when there is none (no instance, or every breaker refused).
    pub fn pick(&self, key: Option<&[u8]>, tried: &[String]) -> Result<Chosen, Error> {
        let targets = self.targets();
        if targets.is_empty() {
            return Err(Error::Unavailable("no healthy upstream instance"));
        }
        // Random strategies may draw a refused instance again: try a few more times than
        // there are instances before giving up.
        for _ in 0..targets.len() * 2 + 1 {
            let Some(pick) = self.balancer.pick(key) else {
                break;
            };
            let id = pick.instance().id.as_str();
            let fresh_left = targets.iter().any(|t| !tried.contains(&t.id));
            if (fresh_left && tried.iter().any(|t| t == id)) || !self.admit(id) {
                continue;
            }
            if let Some(t) = targets.iter().find(|t| t.instance.id == id) {
                let target = t.clone();
                return Ok(Chosen {
                    target,
                    pick: Some(pick),
                });
            }
        }
        // The balancer keeps preferring refused or already-tried instances (a dead instance
        // fails fast, so its latency looks good): scan for any other admissible one.
        let untried = targets.iter().filter(|t| !tried.contains(&t.id));
        if let Some(t) = untried.clone().find(|t| self.admit(&t.id)) {
            return Ok(Chosen {
                target: t.clone(),
                pick: None,
            });
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

    /// Records the outcome of an attempt: feeds the balancer's latency and outlier statistics
    /// and the instance's breaker.
    pub fn record(&self, chosen: Chosen, outcome: Outcome) {
        let success = match outcome {
            Outcome::Answered(status) => !self.failure_statuses.contains(&status),
            Outcome::Failed => false,
            Outcome::ClientFault => return,
        };
        self.record_breaker(&chosen.target.id, success);
        if let Some(p) = chosen.pick {
            p.finish(success);
        }
    }

    fn record_breaker(&self, id: &str, success: bool) {
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
                    "scheme": t.scheme.as_str(),
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

fn failure_statuses(statuses: &[u16], key: &str) -> Result<Box<[http::StatusCode]>, Error> {
    statuses
        .iter()
        .enumerate()
        .map(|(i, &code)| {
            http::StatusCode::from_u16(code)
                .ok()
                .filter(http::StatusCode::is_server_error)
                .ok_or_else(|| {
                    Error::config(
                        format!("{key}.breaker_statuses[{i}]"),
                        format!("{code} is not a 5xx status"),
                    )
                })
        })
        .collect()
}

fn endpoint_target(e: &flotilla_discovery::Endpoint) -> Option<Target> {
    let uri: http::Uri = e.instance.base_url().parse().ok()?;
    Some(Target {
        id: e.instance.id.clone(),
        scheme: uri.scheme()?.clone(),
        authority: uri.authority()?.clone(),
        instance: e.instance.clone(),
    })
}

fn static_targets(urls: &[String], key: &str) -> Result<Targets, Error> {
    urls.iter()
        .enumerate()
        .map(|(i, u)| {
            let bad = |r: &str| Error::config(format!("{key}.urls[{i}]"), format!("{u:?}: {r}"));
            let uri: http::Uri = u.parse().map_err(|_| bad("not a URL"))?;
            let scheme = match uri.scheme() {
                Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
                _ => return Err(bad("expected an http:// or https:// URL")),
            };
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            if path != "/" {
                return Err(bad("a base URL has no path; use a rewrite to add one"));
            }
            let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
            let https = scheme == Scheme::HTTPS;
            let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
            let name = ServiceName::new("static").map_err(|e| bad(&e.to_string()))?;
            let mut instance = ServiceInstance::new(name, authority.host(), port);
            instance.id = u.clone();
            if https {
                instance.scheme = flotilla_core::Scheme::Https;
            }
            Ok(Arc::new(Target {
                id: u.clone(),
                scheme,
                authority,
                instance,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_discovery::StaticDiscovery;
    use flotilla_resilience::balance::Strategy;

    fn fixed(urls: &[&str], threshold: u32) -> Upstream {
        let cfg = UpstreamConfig {
            name: "u".into(),
            urls: urls.iter().map(|s| s.to_string()).collect(),
            breaker_failures: Some(threshold),
            ..Default::default()
        };
        Upstream::build(
            &cfg,
            "upstreams[0]",
            &StaticDiscovery::new(),
            &ServerOptions::default(),
        )
        .unwrap()
    }

    fn pick_id(u: &Upstream) -> Result<String, Error> {
        let c = u.pick(None, &[])?;
        let id = c.target.id.clone();
        drop(c);
        Ok(id)
    }

    #[test]
    fn round_robin_visits_every_instance() {
        let mut u = fixed(&["http://127.0.0.1:1", "http://127.0.0.1:2"], 5);
        u.balancer = Balancer::new(
            "u",
            BalanceConfig {
                strategy: Strategy::RoundRobin,
                ..Default::default()
            },
            None,
        );
        let a = pick_id(&u).unwrap();
        let b = pick_id(&u).unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_threshold_and_half_opens_after_the_wait() {
        let u = fixed(&["http://127.0.0.1:1"], 2);
        let fail = |u: &Upstream| u.record(u.pick(None, &[]).unwrap(), Outcome::Failed);
        fail(&u);
        assert!(pick_id(&u).is_ok());
        fail(&u);
        assert!(matches!(pick_id(&u), Err(Error::Unavailable(_))));
        tokio::time::advance(Duration::from_secs(11)).await;
        let probe = u.pick(None, &[]).expect("one probe is let through");
        assert!(pick_id(&u).is_err(), "only one probe while half-open");
        u.record(probe, Outcome::Answered(http::StatusCode::OK));
        assert!(pick_id(&u).is_ok());
    }

    #[test]
    fn answers_open_the_breaker_only_when_their_status_is_listed() {
        let answer = |u: &Upstream, code: u16| {
            let status = http::StatusCode::from_u16(code).unwrap();
            u.record(u.pick(None, &[]).unwrap(), Outcome::Answered(status));
        };
        let u = fixed(&["http://127.0.0.1:1"], 2);
        for _ in 0..10 {
            answer(&u, 503);
        }
        assert!(
            pick_id(&u).is_ok(),
            "an answer is not the gateway's failure"
        );
        let mut cfg = UpstreamConfig {
            name: "u".into(),
            urls: vec!["http://127.0.0.1:1".into()],
            breaker_failures: Some(2),
            ..Default::default()
        };
        cfg.breaker_statuses = vec![502, 503];
        let (d, server) = (StaticDiscovery::new(), ServerOptions::default());
        let u = Upstream::build(&cfg, "upstreams[0]", &d, &server).unwrap();
        answer(&u, 500);
        answer(&u, 500);
        assert!(pick_id(&u).is_ok(), "500 is not listed");
        answer(&u, 503);
        answer(&u, 502);
        assert!(matches!(pick_id(&u), Err(Error::Unavailable(_))), "listed");
    }

    #[test]
    fn a_breaker_status_that_is_not_5xx_names_its_key() {
        let cfg = UpstreamConfig {
            name: "u".into(),
            urls: vec!["http://127.0.0.1:1".into()],
            breaker_statuses: vec![503, 404],
            ..Default::default()
        };
        let server = ServerOptions::default();
        let e =
            Upstream::build(&cfg, "upstreams[2]", &StaticDiscovery::new(), &server).unwrap_err();
        assert!(
            e.to_string().contains("upstreams[2].breaker_statuses[1]"),
            "{e}"
        );
    }

    #[test]
    fn bad_urls_name_the_key() {
        let cfg = UpstreamConfig {
            name: "u".into(),
            urls: vec!["ftp://x".into()],
            ..Default::default()
        };
        let server = ServerOptions::default();
        let e =
            Upstream::build(&cfg, "upstreams[3]", &StaticDiscovery::new(), &server).unwrap_err();
        assert!(e.to_string().contains("upstreams[3].urls[0]"), "{e}");
    }

    #[test]
    fn https_urls_keep_their_scheme_and_default_port() {
        let u = fixed(&["https://api.example.com"], 5);
        let t = &u.targets()[0];
        assert_eq!(t.scheme, Scheme::HTTPS);
        assert_eq!(t.instance.port, 443);
    }

    #[test]
    fn a_missing_ca_file_names_the_key() {
        let cfg = UpstreamConfig {
            name: "u".into(),
            urls: vec!["https://x".into()],
            tls: Some(crate::config::UpstreamTls {
                ca_file: Some("/nonexistent/ca.pem".into()),
                server_name: None,
            }),
            ..Default::default()
        };
        let server = ServerOptions::default();
        let e =
            Upstream::build(&cfg, "upstreams[1]", &StaticDiscovery::new(), &server).unwrap_err();
        assert!(e.to_string().contains("upstreams[1].tls.ca_file"), "{e}");
    }
}
