//! The RFC 9111 rules of a shared cache, as pure functions of headers and times: what may be
//! stored (§3), how long it stays fresh (§4.2), how old it is (§4.2.3), and whether a stored
//! response may answer a request as it is, while revalidating, or only after revalidation.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap};
use http::{Method, StatusCode};

/// `Cache-Control` directives this cache acts on, from either a request or a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (a qualified `no-cache="field"` is treated as unqualified: stricter).
    pub no_cache: bool,
    /// `private` (qualified or not: a shared cache stores neither).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `must-understand` (§5.2.2.3): store only a status code whose caching rules this cache
    /// implements, and then ignore `no-store`.
    pub must_understand: bool,
    /// `max-age`; an invalid value counts as 0 (RFC 9111 §1.2.2).
    pub max_age: Option<u64>,
    /// `s-maxage`.
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate` (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// Request `max-stale`: `Some(None)` accepts any staleness.
    pub max_stale: Option<Option<u64>>,
    /// Request `min-fresh`.
    pub min_fresh: Option<u64>,
    /// Request `only-if-cached`.
    pub only_if_cached: bool,
}

impl Directives {
    /// Parses every `Cache-Control` line of `headers`. Unknown directives are ignored; for a
    /// repeated directive the first occurrence wins (RFC 9111 §4.2.1).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        let lines = headers.get_all(header::CACHE_CONTROL).iter();
        for item in lines
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
        {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (item.trim(), None),
            };
            d.apply(&name.to_ascii_lowercase(), value);
        }
        d
    }

    fn apply(&mut self, name: &str, value: Option<&str>) {
        let seconds = || Some(value.and_then(|v| v.parse().ok()).unwrap_or(0));
        match name {
            "no-store" => self.no_store = true,
            "no-cache" => self.no_cache = true,
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "only-if-cached" => self.only_if_cached = true,
            "max-age" if self.max_age.is_none() => self.max_age = seconds(),
            "s-maxage" if self.s_maxage.is_none() => self.s_maxage = seconds(),
            "min-fresh" if self.min_fresh.is_none() => self.min_fresh = seconds(),
            "stale-while-revalidate" if self.stale_while_revalidate.is_none() => {
                self.stale_while_revalidate = seconds();
            }
            "max-stale" if self.max_stale.is_none() => {
                self.max_stale = Some(value.map(|v| v.parse().unwrap_or(0)));
            }
            _ => {}
        }
    }

    /// Whether a stale response may never be served without revalidation: `must-revalidate`,
    /// `proxy-revalidate`, or `s-maxage` (which implies `proxy-revalidate`, §5.2.2.10).
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

/// Status codes that are heuristically cacheable (RFC 9110 §15.1), minus 206: partial
/// content is not stored here.
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Why a response is not stored; `None` from [`storable`] means it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// Only GET and HEAD responses are stored.
    Method,
    /// 1xx, 206 and 304 are never stored; other statuses need explicit freshness unless
    /// heuristically cacheable.
    Status,
    /// `no-store` in the request or the response.
    NoStore,
    /// `private`: a shared cache must not store it.
    Private,
    /// The request carried credentials (`Authorization`, `Cookie` or the route's auth) and
    /// the response did not allow sharing (§3.5).
    Authorization,
    /// `Vary: *`: no later request can be shown to match.
    VaryStar,
    /// `Set-Cookie`: one client's cookie must not be handed to another.
    SetCookie,
    /// `must-understand` on a status code whose caching rules this cache does not implement.
    MustUnderstand,
}

/// What [`storable`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request's directives.
    pub request: &'a Directives,
    /// Whether the request carried credentials: `Authorization`, `Cookie`, or the route's
    /// auth. The response is then personal unless it says otherwise.
    pub authenticated: bool,
    /// The response status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: &'a HeaderMap,
    /// The response's directives.
    pub response: &'a Directives,
}

/// RFC 9111 §3: whether a shared cache may store this response.
pub fn storable(x: &Exchange<'_>) -> Result<(), NotStored> {
    let r = x.response;
    if *x.method != Method::GET && *x.method != Method::HEAD {
        return Err(NotStored::Method);
    }
    let s = x.status.as_u16();
    if s < 200 || s == 206 || s == 304 {
        return Err(NotStored::Status);
    }
    if r.must_understand && !understood(x.status) {
        return Err(NotStored::MustUnderstand);
    }
    // An understood `must-understand` response overrides its own `no-store` (§5.2.2.3); the
    // request's still holds.
    if x.request.no_store || (r.no_store && !r.must_understand) {
        return Err(NotStored::NoStore);
    }
    if r.private {
        return Err(NotStored::Private);
    }
    if x.authenticated && !(r.public || r.s_maxage.is_some() || r.must_revalidate) {
        return Err(NotStored::Authorization);
    }
    if crate::cache::key::vary_names(x.headers).is_none() {
        return Err(NotStored::VaryStar);
    }
    if x.headers.contains_key(header::SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    let explicit = r.public
        || r.max_age.is_some()
        || r.s_maxage.is_some()
        || x.headers.contains_key(header::EXPIRES);
    if !explicit && !heuristically_cacheable(x.status) {
        return Err(NotStored::Status);
    }
    Ok(())
}

/// Final status codes RFC 9110 §15 defines: this cache implements RFC 9111 for each of them
/// (206 is understood by never being stored). Anything else is unknown to it, which matters
/// only for `must-understand` responses.
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// Route settings that shape freshness when the response sets none.
#[derive(Debug, Clone, Copy, Default)]
pub struct Heuristics {
    /// Freshness for responses without explicit expiry (instead of the Last-Modified rule).
    pub default_ttl: Option<Duration>,
    /// Cap on 10% of the Last-Modified age; zero disables the heuristic.
    pub max_heuristic: Duration,
}

/// An HTTP-date header as a time; `None` when absent or malformed.
pub fn date_header(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    let v = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(v).ok()
}

/// RFC 9111 §4.2.1 for a shared cache: `s-maxage`, else `max-age`, else `Expires` minus
/// `Date`, else a heuristic where §4.2.2 allows one, else zero. `response_time` stands in for
/// a missing `Date`.
pub fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    d: &Directives,
    response_time: SystemTime,
    h: &Heuristics,
) -> Duration {
    if let Some(s) = d.s_maxage.or(d.max_age) {
        return Duration::from_secs(s);
    }
    let date = date_header(headers, header::DATE).unwrap_or(response_time);
    if headers.contains_key(header::EXPIRES) {
        // A malformed Expires (often "0") means already expired (§5.3).
        return date_header(headers, header::EXPIRES)
            .and_then(|e| e.duration_since(date).ok())
            .unwrap_or_default();
    }
    if !(heuristically_cacheable(status) || d.public) {
        return Duration::ZERO;
    }
    if let Some(ttl) = h.default_ttl {
        return ttl;
    }
    date_header(headers, header::LAST_MODIFIED)
        .and_then(|lm| date.duration_since(lm).ok())
        .map_or(Duration::ZERO, |age| (age / 10).min(h.max_heuristic))
}

/// RFC 9111 §4.2.3's `corrected_initial_age`: the response's age when it arrived.
pub fn initial_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let date = date_header(headers, header::DATE).unwrap_or(response_time);
    let apparent = response_time.duration_since(date).unwrap_or_default();
    let delay = response_time
        .duration_since(request_time)
        .unwrap_or_default();
    apparent.max(age_value(headers).saturating_add(delay))
}

/// The largest `Age` this cache believes (RFC 9111 §1.2.2: 2^31 seconds).
pub const MAX_AGE_VALUE: Duration = Duration::from_secs(1 << 31);

/// The `Age` header, capped at [`MAX_AGE_VALUE`] (a value too large for any integer is the
/// cap too). `Age` is exactly one delta-seconds (RFC 9111 §5.1); anything else — a list
/// (`7200, 0`), two lines, a sign, a fraction, a parameter, letters — says only that some
/// cache on the way reported an age we cannot read, so it counts as the largest age: the
/// response is stored but revalidated before use rather than served as fresh on a guess.
fn age_value(headers: &HeaderMap) -> Duration {
    let mut lines = headers.get_all(header::AGE).iter();
    let (Some(v), None) = (lines.next(), lines.next()) else {
        return if headers.contains_key(header::AGE) {
            MAX_AGE_VALUE
        } else {
            Duration::ZERO
        };
    };
    let v = v.to_str().map(str::trim).unwrap_or_default();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return MAX_AGE_VALUE;
    }
    v.parse::<u64>()
        .map_or(MAX_AGE_VALUE, Duration::from_secs)
        .min(MAX_AGE_VALUE)
}

/// What the cache knows about a stored response's age and freshness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// When the response (or the 304 that last refreshed it) arrived.
    pub response_time: SystemTime,
    /// Its age on arrival.
    pub initial_age: Duration,
    /// How long it stays fresh.
    pub lifetime: Duration,
    /// The response's directives.
    pub directives: Directives,
}

impl Freshness {
    /// RFC 9111 §4.2.3's `current_age` at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        let resident = now.duration_since(self.response_time).unwrap_or_default();
        self.initial_age.saturating_add(resident)
    }
}

/// How a stored response may answer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    /// Fresh enough for this request: serve it.
    Fresh,
    /// Stale, but the request's `max-stale` accepts it: serve it.
    StaleAccepted,
    /// Stale within `stale-while-revalidate`: serve it and revalidate in the background.
    StaleWhileRevalidate,
    /// Must be revalidated with the origin before use.
    Revalidate,
}

/// RFC 9111 §4.2 and §5.2: whether `stored` may answer a request with directives `req` at
/// `now`.
pub fn usable(stored: &Freshness, req: &Directives, now: SystemTime) -> Usable {
    let resp = &stored.directives;
    let age = stored.age(now);
    // `max-age=0` is how clients ask for revalidation, even of a response zero seconds old.
    let too_old = req.max_age.is_some_and(|m| m == 0 || age.as_secs() > m);
    if resp.no_cache || req.no_cache || too_old {
        return Usable::Revalidate;
    }
    if age < stored.lifetime {
        let left = stored.lifetime - age;
        let min_fresh = Duration::from_secs(req.min_fresh.unwrap_or(0));
        return if left >= min_fresh {
            Usable::Fresh
        } else {
            Usable::Revalidate
        };
    }
    if resp.forbids_stale() {
        return Usable::Revalidate;
    }
    let stale = age - stored.lifetime;
    if let Some(limit) = req.max_stale
        && limit.is_none_or(|l| stale.as_secs() <= l)
    {
        return Usable::StaleAccepted;
    }
    if resp
        .stale_while_revalidate
        .is_some_and(|w| stale.as_secs() < w)
    {
        return Usable::StaleWhileRevalidate;
    }
    Usable::Revalidate
}

/// The request's `max-stale` limited to what the route allows: with `allowed` zero a client
/// never gets a stale response by asking, and an unbounded `max-stale` means `allowed`.
pub fn cap_max_stale(requested: Option<Option<u64>>, allowed: Duration) -> Option<Option<u64>> {
    let cap = allowed.as_secs();
    match requested {
        _ if cap == 0 => None,
        None => None,
        Some(limit) => Some(Some(limit.map_or(cap, |l| l.min(cap)))),
    }
}

/// Whether a response may be stored at all given its freshness: one that is never fresh and
/// has no validator to revalidate it with could never be served from the store.
pub fn worth_storing(lifetime: Duration, headers: &HeaderMap) -> bool {
    !lifetime.is_zero()
        || headers.contains_key(header::ETAG)
        || headers.contains_key(header::LAST_MODIFIED)
}

/// Seconds of freshness left at `now`, negative when stale (the `ttl` of `Cache-Status`).
pub fn ttl_secs(stored: &Freshness, now: SystemTime) -> i64 {
    let age = i64::try_from(stored.age(now).as_secs()).unwrap_or(i64::MAX);
    i64::try_from(stored.lifetime.as_secs())
        .unwrap_or(i64::MAX)
        .saturating_sub(age)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
