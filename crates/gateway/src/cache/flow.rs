//! The cache's request path: look up, then serve fresh, serve stale while revalidating,
//! revalidate, or fetch (collapsed with concurrent misses) and store.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{self, CONTENT_LENGTH};
use http::{Response, StatusCode};

use super::body::{Collected, up_to};
use super::collapse::{Role, wait};
use super::conditional::{
    ClientConditions, add_validators, has_validator, not_modified_headers, refresh_headers,
};
use super::key::{PrimaryKey, vary_names, vary_values};
use super::policy::{self, Directives, Exchange, Freshness, Usable};
use super::store::Entry;
use super::{Cache, CacheStatus, Forward, Lookup, Origin, RouteCache, range, render};
use crate::Error;
use crate::headers::strip_hop_by_hop;
use crate::problem::{Body, full};

/// When the origin was asked and when it answered.
#[derive(Debug, Clone, Copy)]
struct Times {
    request: SystemTime,
    response: SystemTime,
}

/// Answers `req` from the cache or through `origin`, storing what may be stored.
pub(crate) async fn serve<O: Origin>(
    cache: &Arc<Cache>,
    rc: &Arc<RouteCache>,
    mut req: Lookup,
    origin: O,
) -> Result<Response<Body>, Error> {
    req.directives.max_stale = policy::cap_max_stale(req.directives.max_stale, rc.max_stale);
    if let Some(range) = req.range.clone() {
        return serve_range(cache, rc, &req, &range, origin).await;
    }
    let (resp, status) = match cache.find(&req) {
        Some((key, entry)) => from_stored(cache, rc, &req, key, entry, origin).await?,
        None if req.directives.only_if_cached => {
            rc.metrics.misses.inc();
            return Err(Error::NotCached);
        }
        None => on_miss(cache, rc, &req, origin).await?,
    };
    Ok(finish(resp, status, &req.conditions))
}

type Answer = (Response<Body>, CacheStatus);

/// A GET with `Range`: one range of a stored `200` that needs no revalidation, without asking
/// the origin. Otherwise the request goes to the origin as the client sent it and nothing is
/// stored: partial content is not stored, and fetching the whole representation for one range
/// of it could cost far more than the range.
async fn serve_range<O: Origin>(
    cache: &Cache,
    rc: &RouteCache,
    req: &Lookup,
    range: &http::HeaderValue,
    origin: O,
) -> Result<Response<Body>, Error> {
    let now = cache.now();
    let stored = cache.find(req).and_then(|(_, entry)| {
        let usable = policy::usable(&entry.freshness, &req.directives, now);
        let served = matches!(usable, Usable::Fresh | Usable::StaleAccepted);
        (entry.status == StatusCode::OK && served).then_some((entry, usable))
    });
    if let Some((entry, usable)) = stored {
        if usable == Usable::Fresh {
            count_hit(cache, rc);
        } else {
            rc.metrics.stale.inc();
        }
        let whole = render(&entry, false, Some(entry.freshness.age(now)));
        // Preconditions come before the range (RFC 9110 §13.2.2): a match is a 304.
        let resp = if req.conditions.not_modified(whole.headers()) {
            whole
        } else {
            range::apply(whole, &entry.body, range)
        };
        let ttl = policy::ttl_secs(&entry.freshness, now);
        let status = CacheStatus::Hit {
            ttl,
            collapsed: false,
        };
        return Ok(finish(resp, status, &req.conditions));
    }
    count_miss(cache, rc);
    if req.directives.only_if_cached {
        return Err(Error::NotCached);
    }
    let mut resp = origin.fetch(req.head.clone()).await?;
    let status = forwarded(Forward::Bypass, None, false);
    resp.headers_mut().append("cache-status", status.header());
    Ok(resp)
}

async fn from_stored<O: Origin>(
    cache: &Arc<Cache>,
    rc: &Arc<RouteCache>,
    req: &Lookup,
    key: PrimaryKey,
    entry: Arc<Entry>,
    origin: O,
) -> Result<Answer, Error> {
    let now = cache.now();
    let ttl = policy::ttl_secs(&entry.freshness, now);
    let age = Some(entry.freshness.age(now));
    let served = |collapsed| CacheStatus::Hit { ttl, collapsed };
    match policy::usable(&entry.freshness, &req.directives, now) {
        Usable::Fresh => {
            count_hit(cache, rc);
            Ok((render(&entry, req.is_head(), age), served(false)))
        }
        Usable::StaleAccepted => {
            rc.metrics.stale.inc();
            Ok((render(&entry, req.is_head(), age), served(false)))
        }
        Usable::StaleWhileRevalidate => {
            rc.metrics.stale.inc();
            if entry.claim_revalidation() {
                background_revalidation(cache, rc, req, key, entry.clone(), origin);
            }
            Ok((render(&entry, req.is_head(), age), served(false)))
        }
        Usable::Revalidate if req.directives.only_if_cached => {
            rc.metrics.misses.inc();
            Err(Error::NotCached)
        }
        Usable::Revalidate => revalidate(cache, rc, req, key, &entry, origin).await,
    }
}

fn count_hit(cache: &Cache, rc: &RouteCache) {
    rc.metrics.hits.inc();
    cache
        .hits
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn count_miss(cache: &Cache, rc: &RouteCache) {
    rc.metrics.misses.inc();
    cache
        .misses
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn background_revalidation<O: Origin>(
    cache: &Arc<Cache>,
    rc: &Arc<RouteCache>,
    req: &Lookup,
    key: PrimaryKey,
    entry: Arc<Entry>,
    origin: O,
) {
    let (cache, rc, req) = (cache.clone(), rc.clone(), req.clone());
    tokio::spawn(async move {
        if let Err(e) = revalidate(&cache, &rc, &req, key, &entry, origin).await {
            tracing::debug!(error = %e, "background revalidation failed");
        }
        // A refreshed entry replaced this one; otherwise let the next request try again.
        entry.release_revalidation();
    });
}

/// Sends a conditional request for `entry`; a 304 refreshes it (RFC 9111 §4.3.4), anything
/// else is handled like a fresh fetch.
async fn revalidate<O: Origin>(
    cache: &Cache,
    rc: &RouteCache,
    req: &Lookup,
    key: PrimaryKey,
    entry: &Entry,
    origin: O,
) -> Result<Answer, Error> {
    count_miss(cache, rc);
    rc.metrics.revalidations.inc();
    // The request forced this when the entry would have served a request without directives.
    let unforced = policy::usable(&entry.freshness, &Directives::default(), cache.now());
    let why = if unforced == Usable::Fresh {
        Forward::Request
    } else {
        Forward::Stale
    };
    let conditional = has_validator(&entry.headers);
    let mut head = req.head.clone();
    if conditional {
        add_validators(&mut head.headers, &entry.headers);
    }
    let request = cache.now();
    let resp = origin.fetch(head).await?;
    let times = Times {
        request,
        response: cache.now(),
    };
    let upstream_status = resp.status().as_u16();
    if conditional && resp.status() == StatusCode::NOT_MODIFIED {
        let refreshed = Arc::new(refreshed(entry, resp.headers(), times, rc));
        let still_storable = storable_after_refresh(req, &refreshed);
        if still_storable {
            cache
                .store
                .insert(key, refreshed.clone(), &rc.metrics.stored_bytes);
        } else {
            // The origin no longer lets a shared cache keep this response.
            cache.store.remove(&key);
        }
        let status = forwarded(why, Some(upstream_status), still_storable);
        let mut out = render(&refreshed, req.is_head(), None);
        // A cookie the origin set for this client reaches this client only.
        for cookie in resp.headers().get_all(header::SET_COOKIE) {
            out.headers_mut().append(header::SET_COOKIE, cookie.clone());
        }
        return Ok((out, status));
    }
    let (resp, stored) = store_or_pass(cache, rc, req, resp, times).await?;
    Ok((resp, forwarded(why, Some(upstream_status), stored)))
}

fn forwarded(why: Forward, status: Option<u16>, stored: bool) -> CacheStatus {
    CacheStatus::Forwarded {
        why,
        status,
        stored,
    }
}

/// RFC 9111 §3 again on the headers a 304 produced: it may have added `no-store`,
/// `private` or `Vary: *`.
fn storable_after_refresh(req: &Lookup, refreshed: &Entry) -> bool {
    let exchange = Exchange {
        method: &req.head.method,
        request: &req.directives,
        authenticated: req.authenticated,
        status: refreshed.status,
        headers: &refreshed.headers,
        response: &refreshed.freshness.directives,
    };
    policy::storable(&exchange).is_ok()
}

/// The stored entry with a 304's headers merged in and its age restarted from the 304.
fn refreshed(entry: &Entry, not_modified: &http::HeaderMap, t: Times, rc: &RouteCache) -> Entry {
    let mut headers = refresh_headers(&entry.headers, not_modified);
    let freshness = freshness(entry.status, &headers, t, rc);
    headers.remove(header::AGE);
    Entry::new(
        entry.status,
        headers,
        entry.body.clone(),
        entry.vary.clone(),
        freshness,
    )
}

fn freshness(
    status: StatusCode,
    headers: &http::HeaderMap,
    t: Times,
    rc: &RouteCache,
) -> Freshness {
    let directives = Directives::parse(headers);
    Freshness {
        response_time: t.response,
        initial_age: policy::initial_age(headers, t.request, t.response),
        lifetime: policy::freshness_lifetime(
            status,
            headers,
            &directives,
            t.response,
            &rc.heuristics,
        ),
        directives,
    }
}

/// Nothing stored: the first request for the key fetches, concurrent ones wait for it and
/// use what it stored, or fetch themselves when it stored nothing usable.
async fn on_miss<O: Origin>(
    cache: &Cache,
    rc: &RouteCache,
    req: &Lookup,
    origin: O,
) -> Result<Answer, Error> {
    match cache.in_flight.join(&req.key) {
        Role::Leader(guard) => {
            let answer = fetch(cache, rc, req, origin).await;
            drop(guard);
            answer
        }
        Role::Follower(rx) => {
            cache
                .collapsed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            wait(rx).await;
            let now = cache.now();
            if let Some((_, entry)) = cache.find(req)
                && policy::usable(&entry.freshness, &req.directives, now) == Usable::Fresh
            {
                count_hit(cache, rc);
                let ttl = policy::ttl_secs(&entry.freshness, now);
                let age = Some(entry.freshness.age(now));
                let status = CacheStatus::Hit {
                    ttl,
                    collapsed: true,
                };
                return Ok((render(&entry, req.is_head(), age), status));
            }
            fetch(cache, rc, req, origin).await
        }
    }
}

async fn fetch<O: Origin>(
    cache: &Cache,
    rc: &RouteCache,
    req: &Lookup,
    origin: O,
) -> Result<Answer, Error> {
    count_miss(cache, rc);
    let request = cache.now();
    let resp = origin.fetch(req.head.clone()).await?;
    let times = Times {
        request,
        response: cache.now(),
    };
    let (resp, stored) = store_or_pass(cache, rc, req, resp, times).await?;
    Ok((resp, forwarded(Forward::Miss, None, stored)))
}

/// Stores the origin's response when RFC 9111 and the size limit allow, and returns what
/// to send the client; anything else streams through untouched.
async fn store_or_pass(
    cache: &Cache,
    rc: &RouteCache,
    req: &Lookup,
    resp: Response<Body>,
    times: Times,
) -> Result<(Response<Body>, bool), Error> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    let directives = Directives::parse(&parts.headers);
    let exchange = Exchange {
        method: &req.head.method,
        request: &req.directives,
        authenticated: req.authenticated,
        status: parts.status,
        headers: &parts.headers,
        response: &directives,
    };
    let declared_too_big =
        !req.is_head() && declared_length(&parts.headers) > Some(rc.max_entry_bytes);
    let freshness = freshness(parts.status, &parts.headers, times, rc);
    let never_usable = !policy::worth_storing(freshness.lifetime, &parts.headers);
    if policy::storable(&exchange).is_err() || declared_too_big || never_usable {
        return Ok((Response::from_parts(parts, body), false));
    }
    let collected = up_to(body, rc.max_entry_bytes)
        .await
        .map_err(|e| Error::Upstream(format!("reading the response body: {e}")))?;
    let bytes = match collected {
        Collected::Whole(b) => b,
        Collected::TooLarge(rest) => return Ok((Response::from_parts(parts, rest), false)),
    };
    let names = vary_names(&parts.headers).unwrap_or_default();
    let vary = vary_values(&names, &req.head.headers);
    // An upstream cache's `Age` becomes the initial age; pass it on, corrected.
    let age = (parts.headers.remove(header::AGE)).map(|_| freshness.initial_age);
    let entry = Arc::new(Entry::new(
        parts.status,
        parts.headers,
        bytes,
        vary,
        freshness,
    ));
    cache
        .store
        .insert(req.key.clone(), entry.clone(), &rc.metrics.stored_bytes);
    Ok((render(&entry, req.is_head(), age), true))
}

fn declared_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Applies the client's own conditions and adds `Cache-Status`.
fn finish(resp: Response<Body>, status: CacheStatus, c: &ClientConditions) -> Response<Body> {
    let mut resp = if resp.status() == StatusCode::OK && c.not_modified(resp.headers()) {
        let mut nm = Response::new(full(bytes::Bytes::new()));
        *nm.status_mut() = StatusCode::NOT_MODIFIED;
        *nm.headers_mut() = not_modified_headers(resp.headers());
        nm
    } else {
        resp
    };
    // RFC 9211: an upstream cache's entry stays first, ours is appended.
    resp.headers_mut().append("cache-status", status.header());
    resp
}
