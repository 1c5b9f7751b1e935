//! Per-route GCRA rate limits (governor), in memory, keyed by client address, a header, the
//! API key's name or a JWT claim. Answers carry the IETF `RateLimit-Policy` / `RateLimit`
//! headers (draft-ietf-httpapi-ratelimit-headers) and, when refused, `Retry-After`. Routes
//! with `shared = true` ask a limiter shared by every replica instead ([`shared`]); the
//! in-memory limiter is then their fallback.

mod shared;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use flotilla_resilience::shared_rate_limit::Decision;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::Error;
use crate::auth::{Identity, RouteAuth, claim_text};
use crate::config::RateLimitConfig;
use crate::table::RouteTable;

use shared::SharedRoute;
pub use shared::{DEFAULT_TIMEOUT, FallbackLabels, LOG_EVERY, OnSharedFailure, SharedLimits};

/// What identifies a caller.
#[derive(Debug, Clone)]
enum KeyBy {
    ClientIp,
    Header(HeaderName),
    ApiKey,
    Claim(String),
}

/// A route's limiter.
#[derive(Debug)]
pub struct RouteLimiter {
    limiter: DefaultKeyedRateLimiter<String, StateInformationMiddleware>,
    key: KeyBy,
    policy: HeaderValue,
    window_secs: u64,
    /// Set by [`attach_shared`] when the route's config asks for `shared = true`.
    shared: Option<SharedRoute>,
}

/// The limiter's verdict for an allowed request: headers to add to the response.
#[derive(Debug)]
pub struct Allowed(pub HeaderValue, pub HeaderValue);

impl RouteLimiter {
    /// Compiles a `rate_limit` table at config key `key`.
    pub fn build(
        cfg: &RateLimitConfig,
        key: &str,
        auth: Option<&RouteAuth>,
    ) -> Result<Self, Error> {
        let requests = NonZeroU32::new(cfg.requests)
            .ok_or_else(|| Error::config(format!("{key}.requests"), "must be at least 1"))?;
        let burst = NonZeroU32::new(cfg.burst.unwrap_or(cfg.requests))
            .ok_or_else(|| Error::config(format!("{key}.burst"), "must be at least 1"))?;
        let period = cfg.per.duration() / requests.get();
        let quota = Quota::with_period(period)
            .ok_or_else(|| {
                Error::config(
                    format!("{key}.requests"),
                    "too many requests for the window",
                )
            })?
            .allow_burst(burst);
        let key_by =
            parse_key(&cfg.key, auth).map_err(|r| Error::config(format!("{key}.key"), r))?;
        let window_secs = cfg.per.duration().as_secs();
        let policy = format!("\"route\";q={};w={window_secs}", cfg.requests);
        Ok(Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota).with_middleware(),
            key: key_by,
            policy: HeaderValue::from_str(&policy).map_err(|_| Error::config(key, "bad policy"))?,
            window_secs,
            shared: None,
        })
    }

    /// Counts one request for its caller; `RateLimited` when the caller is over the limit.
    /// `None` when the request is admitted without being counted (the shared limiter failed
    /// and the route's policy is `allow`): there is then nothing to tell in headers.
    pub async fn check(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        id: &Identity,
    ) -> Result<Option<Allowed>, Error> {
        let k = self.caller_key(peer, headers, id);
        let Some(shared) = &self.shared else {
            return self.check_local(&k).map(Some);
        };
        if let Some(decision) = shared.acquire(&k).await {
            return self.verdict(decision).map(Some);
        }
        match shared.on_failure {
            OnSharedFailure::Local => self.check_local(&k).map(Some),
            OnSharedFailure::Allow => Ok(None),
            OnSharedFailure::Deny => Err(Error::Unavailable("rate limiter unavailable")),
        }
    }

    /// Whether this route asks the shared limiter.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    fn verdict(&self, d: Decision) -> Result<Allowed, Error> {
        if d.allowed {
            return Ok(Allowed(self.policy.clone(), self.status(d.remaining, 0)));
        }
        Err(Error::RateLimited {
            retry_after_secs: whole_secs(d.retry_after),
        })
    }

    fn check_local(&self, k: &String) -> Result<Allowed, Error> {
        match self.limiter.check_key(k) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Ok(Allowed(self.policy.clone(), self.status(remaining, 0)))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(Error::RateLimited {
                    retry_after_secs: whole_secs(wait),
                })
            }
        }
    }

    /// The headers that go with a refusal.
    pub fn refusal_headers(&self, retry_after_secs: u64) -> [(HeaderName, HeaderValue); 2] {
        [
            (
                HeaderName::from_static("ratelimit-policy"),
                self.policy.clone(),
            ),
            (
                HeaderName::from_static("ratelimit"),
                self.status(0, retry_after_secs.min(self.window_secs)),
            ),
        ]
    }

    fn status(&self, remaining: u32, reset: u64) -> HeaderValue {
        HeaderValue::from_str(&format!("\"route\";r={remaining};t={reset}"))
            .unwrap_or(HeaderValue::from_static("\"route\""))
    }

    fn caller_key(&self, peer: IpAddr, headers: &HeaderMap, id: &Identity) -> String {
        let value = match &self.key {
            KeyBy::ClientIp => None,
            KeyBy::Header(h) => headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            KeyBy::ApiKey => id.api_key.clone(),
            KeyBy::Claim(c) => id.claims.as_ref().and_then(|cl| claim_text(cl, c)),
        };
        // Callers without the key share one bucket per address, so omitting the header does
        // not escape the limit.
        value.map_or_else(|| format!("ip:{peer}"), |v| format!("k:{v}"))
    }

    /// Drops state of callers whose buckets are full again, bounding memory.
    pub fn shrink(&self) {
        self.limiter.retain_recent();
    }

    /// How many callers are tracked.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

/// Seconds to wait, rounded up, at least 1 (`Retry-After` has whole seconds; 0 would invite
/// an immediate retry that is refused again).
fn whole_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Connects the routes of `table` that set `rate_limit.shared = true` to `limits`; an error
/// names the first such route when the gateway has no shared limiter.
pub(crate) fn attach_shared(
    table: &mut RouteTable,
    limits: Option<&Arc<SharedLimits>>,
) -> Result<(), Error> {
    for route in &mut table.routes {
        let (Some(cfg), Some(limiter)) = (&route.config.rate_limit, &mut route.limiter) else {
            continue;
        };
        if !cfg.shared {
            continue;
        }
        let key = format!("route {:?} rate_limit", route.name);
        let Some(limits) = limits else {
            return Err(Error::config(
                format!("{key}.shared"),
                "this gateway has no shared rate limiter (configure [gateway.shared_rate_limits])",
            ));
        };
        limiter.shared = Some(SharedRoute::build(cfg, &route.name, &key, limits)?);
    }
    Ok(())
}

fn parse_key(text: &str, auth: Option<&RouteAuth>) -> Result<KeyBy, String> {
    if text == "client_ip" {
        return Ok(KeyBy::ClientIp);
    }
    if text == "api_key" {
        return Ok(KeyBy::ApiKey);
    }
    if let Some(h) = text.strip_prefix("header:") {
        return HeaderName::from_bytes(h.as_bytes())
            .map(KeyBy::Header)
            .map_err(|_| format!("{h:?} is not a header name"));
    }
    if let Some(c) = text.strip_prefix("claim:") {
        if !auth.is_some_and(RouteAuth::has_jwt) {
            return Err("a `claim:` key needs `auth.jwt` on the same route".into());
        }
        return Ok(KeyBy::Claim(c.to_owned()));
    }
    Err(format!(
        "{text:?} is not client_ip, api_key, header:<name> or claim:<name>"
    ))
}

/// Interval at which idle limiter state is dropped.
pub const SHRINK_EVERY: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Per;

    impl RouteLimiter {
        /// The in-memory path, as an unshared route takes it.
        fn check_now(&self, peer: IpAddr, h: &HeaderMap, id: &Identity) -> Result<Allowed, Error> {
            self.check_local(&self.caller_key(peer, h, id))
        }
    }

    fn limiter(requests: u32, per: Per, key: &str) -> RouteLimiter {
        let cfg = RateLimitConfig {
            requests,
            per,
            burst: None,
            key: key.into(),
            shared: false,
            on_shared_failure: OnSharedFailure::Local,
        };
        RouteLimiter::build(&cfg, "routes[0].rate_limit", None).unwrap()
    }

    #[test]
    fn a_caller_over_the_limit_is_refused_with_a_retry_after() {
        let l = limiter(2, Per::Hour, "client_ip");
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let h = HeaderMap::new();
        let id = Identity::default();
        assert!(l.check_now(ip, &h, &id).is_ok());
        assert!(l.check_now(ip, &h, &id).is_ok());
        let Err(Error::RateLimited { retry_after_secs }) = l.check_now(ip, &h, &id) else {
            panic!("third request in the hour must be refused");
        };
        assert!(
            (1700..=1800).contains(&retry_after_secs),
            "{retry_after_secs}"
        );
        assert!(
            l.check_now("10.0.0.2".parse().unwrap(), &h, &id).is_ok(),
            "other callers unaffected"
        );
    }

    #[test]
    fn header_keys_separate_callers_and_missing_keys_fall_back_to_the_address() {
        let l = limiter(1, Per::Day, "header:x-tenant");
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let id = Identity::default();
        let mut a = HeaderMap::new();
        a.insert("x-tenant", HeaderValue::from_static("a"));
        let mut b = HeaderMap::new();
        b.insert("x-tenant", HeaderValue::from_static("b"));
        assert!(l.check_now(ip, &a, &id).is_ok());
        assert!(l.check_now(ip, &b, &id).is_ok());
        assert!(l.check_now(ip, &a, &id).is_err());
        assert!(l.check_now(ip, &HeaderMap::new(), &id).is_ok());
        assert!(l.check_now(ip, &HeaderMap::new(), &id).is_err());
    }

    #[test]
    fn claim_keys_need_jwt_auth() {
        let cfg = RateLimitConfig {
            requests: 1,
            per: Per::Second,
            burst: None,
            key: "claim:sub".into(),
            shared: false,
            on_shared_failure: OnSharedFailure::Local,
        };
        let e = RouteLimiter::build(&cfg, "routes[1].rate_limit", None).unwrap_err();
        assert!(e.to_string().contains("routes[1].rate_limit.key"), "{e}");
    }
}
