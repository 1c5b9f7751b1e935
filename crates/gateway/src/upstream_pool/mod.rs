//! The gateway's pool of HTTP/1 connections to upstream instances, each connection driven by
//! the request that has it checked out.
//!
//! hyper-util's pooled client runs every connection in a task of its own: a request checks a
//! connection out under a lock keyed by a SipHash of scheme and authority, hands its request
//! to the connection's task over a channel, gets the response back over a oneshot and the
//! body's chunks over another channel, so each request also wakes the connection's task and
//! is woken by it. Here an idle connection is only its socket and HTTP/1 state: the request
//! that checks it out polls it together with its response, and the response body handed to
//! the proxy ([`PooledBody`]) owns it and polls it while streaming, so the whole exchange runs
//! in the task serving the client. The body puts the connection back once it ended cleanly;
//! a body dropped early or failed drops it (its state is unknown).
//!
//! The gateway keeps one pool per worker runtime (and one per upstream with a `tls` table), so
//! the pool's lock is uncontended and its hosts few: a linear scan finds one without hashing.
//!
//! Nothing polls an idle connection, so one the upstream closed while idle is found out at
//! checkout: it is polled once first, and one that has finished is dropped. A request a reused
//! connection refused before writing a byte (closed under it) goes to another connection, as
//! hyper-util's `retry_canceled_requests` did. A task per pool drops connections idle longer
//! than the idle timeout.

mod body;
mod drive;
#[cfg(test)]
mod tests;

use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, Uri, header};
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_service::Service;

pub(crate) use body::PooledBody;
use drive::{ready, with};

use crate::problem::{Body, BoxError};

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;
type Connection = http1::Connection<Io, Body>;

/// Why a request through the pool failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// The request's URI lacks a scheme or authority: nowhere to connect.
    #[error("the upstream URI {0} is not absolute")]
    NotAbsolute(Uri),
    /// No connection could be made (nothing was sent).
    #[error("cannot connect to the upstream")]
    Connect(#[source] BoxError),
    /// The exchange failed after the request may have been written.
    #[error("the upstream exchange failed")]
    Send(#[source] hyper::Error),
    /// The connection finished without answering.
    #[error("connection closed before the response was complete")]
    Closed,
}

/// Pooled keep-alive HTTP/1.1 connections, `http` or `https` by the request URI's scheme.
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    connector: HttpsConnector<HttpConnector>,
    hosts: Mutex<Vec<Host>>,
    idle_timeout: Duration,
    max_idle: usize,
    reaper: AtomicBool,
}

/// Where a connection goes: an upstream instance's scheme and authority.
#[derive(Clone, PartialEq, Eq)]
struct Key {
    scheme: Scheme,
    authority: Authority,
}

/// One instance's idle connections, most recently used last.
struct Host {
    key: Key,
    idle: Vec<Pooled>,
}

/// A connection as the pool holds it: boxed, because hyper's connection state (with room for
/// a TLS session even on a cleartext connection) is several kilobytes, which every future and
/// body carrying it would otherwise copy at each move.
type Pooled = Box<Idle>;

/// A connection, with the handle that sends it requests.
struct Idle {
    sender: http1::SendRequest<Body>,
    conn: Connection,
    since: Instant,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle_timeout", &self.inner.idle_timeout)
            .field("max_idle", &self.inner.max_idle)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool connecting through `connector`, keeping at most `max_idle` idle connections per
    /// instance, each for at most `idle_timeout`.
    pub(crate) fn new(
        connector: HttpsConnector<HttpConnector>,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                connector,
                hosts: Mutex::default(),
                idle_timeout,
                max_idle,
                reaper: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `req`, whose URI is absolute (`scheme://authority/path?query`), and answers with
    /// the response head; the body streams through the same connection.
    pub(crate) async fn request(
        &self,
        mut req: Request<Body>,
    ) -> Result<Response<PooledBody>, PoolError> {
        let key = Key::of(req.uri())?;
        prepare(&mut req);
        if req.headers().contains_key(header::UPGRADE) {
            return self.upgrade(&key, req).await;
        }
        let bodyless = http_body::Body::is_end_stream(req.body());
        loop {
            let (mut c, reused) = match self.inner.checkout(&key) {
                Some(c) => (c, true),
                // Boxed: dialling holds a whole connection state (kilobytes) across awaits,
                // which would otherwise be part of every request's future, copied at each move.
                None => (Box::pin(self.inner.connect(&key)).await?, false),
            };
            if reused && !ready(&mut c).await {
                continue;
            }
            let mut done = false;
            let mut sent = pin!(c.sender.try_send_request(req));
            let answer = match with(&mut c.conn, &mut done, sent.as_mut()).await {
                Some(answer) => answer,
                None => {
                    // The connection finished without taking the request or answering it:
                    // dropping it hands the request back (or fails the exchange).
                    drop(c);
                    match sent.await {
                        Ok(_) => return Err(PoolError::Closed),
                        Err(e) => {
                            req = refused(e, reused)?;
                            continue;
                        }
                    }
                }
            };
            let resp = match answer {
                Ok(resp) => resp,
                Err(e) => {
                    req = refused(e, reused)?;
                    continue;
                }
            };
            let held = body::Held::new(c, done, self.inner.clone(), key);
            return Ok(body::respond(resp, held, bodyless).await);
        }
    }

    /// An upgrade (WebSocket): on a connection of its own, driven by a task of its own so the
    /// upgraded stream outlives the response; such a connection is never pooled.
    async fn upgrade(
        &self,
        key: &Key,
        req: Request<Body>,
    ) -> Result<Response<PooledBody>, PoolError> {
        let Idle {
            mut sender, conn, ..
        } = *Box::pin(self.inner.connect(key)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection for an upgrade failed");
            }
        });
        let resp = sender.send_request(req).await.map_err(PoolError::Send)?;
        Ok(resp.map(PooledBody::detached))
    }

    /// How many idle connections the pool holds for `uri`'s instance.
    #[cfg(test)]
    pub(crate) fn idle_count(&self, uri: &Uri) -> usize {
        let Ok(key) = Key::of(uri) else { return 0 };
        let hosts = self.inner.hosts();
        hosts
            .iter()
            .find(|h| h.key == key)
            .map_or(0, |h| h.idle.len())
    }
}

/// The request back when a reused connection refused it before writing a byte (it closed
/// under it): it may go to another connection. Any other failure is the exchange's.
fn refused(
    mut e: hyper::client::conn::TrySendError<Request<Body>>,
    reused: bool,
) -> Result<Request<Body>, PoolError> {
    match e.take_message() {
        Some(r) if reused => Ok(r),
        _ => Err(PoolError::Send(e.into_error())),
    }
}

/// What hyper-util's client did to a request before writing it: a `Host` header when there is
/// none (the URI's host, its port unless the scheme's default), and the target in origin form
/// (authority form for `CONNECT`).
fn prepare(req: &mut Request<Body>) {
    if !req.headers().contains_key(header::HOST)
        && let Some(host) = host_header(req.uri())
    {
        req.headers_mut().insert(header::HOST, host);
    }
    // From the URI's own parts: shared bytes, no copy and no parse.
    let mut parts = http::uri::Parts::default();
    if req.method() == Method::CONNECT {
        parts.authority = req.uri().authority().cloned();
    } else {
        parts.path_and_query = Some(
            req.uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
    }
    if let Ok(target) = Uri::from_parts(parts) {
        *req.uri_mut() = target;
    }
}

fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let value = match uri.port_u16() {
        Some(p) if p != default => HeaderValue::from_str(&format!("{host}:{p}")),
        _ => HeaderValue::from_str(host),
    };
    value.ok()
}

impl Key {
    fn of(uri: &Uri) -> Result<Self, PoolError> {
        match (uri.scheme(), uri.authority()) {
            (Some(s), Some(a)) => Ok(Self {
                scheme: s.clone(),
                authority: a.clone(),
            }),
            _ => Err(PoolError::NotAbsolute(uri.clone())),
        }
    }

    /// The URI the connector dials: it reads the scheme, host and port.
    fn connect_uri(&self) -> Result<Uri, PoolError> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| PoolError::Connect(e.into()))
    }
}

impl Inner {
    fn hosts(&self) -> MutexGuard<'_, Vec<Host>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection to `key` that has not been idle too long.
    fn checkout(&self, key: &Key) -> Option<Pooled> {
        let mut hosts = self.hosts();
        let host = hosts.iter_mut().find(|h| h.key == *key)?;
        let c = host.idle.pop()?;
        if c.since.elapsed() < self.idle_timeout {
            return Some(c);
        }
        // The rest were idle longer still; closed once the lock is released.
        let stale = std::mem::take(&mut host.idle);
        drop(hosts);
        drop(stale);
        None
    }

    /// Keeps `c` for the next request to `key`, unless the instance has enough idle ones.
    fn checkin(self: &Arc<Self>, key: Key, mut c: Pooled) {
        c.since = Instant::now();
        let refused = {
            let mut hosts = self.hosts();
            match hosts.iter_mut().find(|h| h.key == key) {
                Some(h) if h.idle.len() >= self.max_idle => Some(c),
                Some(h) => {
                    h.idle.push(c);
                    None
                }
                None if self.max_idle == 0 => Some(c),
                None => {
                    hosts.push(Host { key, idle: vec![c] });
                    None
                }
            }
        };
        // A refused connection closes here, outside the lock.
        if refused.is_none() && !self.reaper.swap(true, Ordering::Relaxed) {
            self.start_reaper();
        }
    }

    async fn connect(&self, key: &Key) -> Result<Pooled, PoolError> {
        let uri = key.connect_uri()?;
        let mut connector = self.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(PoolError::Connect)?;
        let io = connector.call(uri).await.map_err(PoolError::Connect)?;
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| PoolError::Connect(e.into()))?;
        Ok(Box::new(Idle {
            sender,
            conn,
            since: Instant::now(),
        }))
    }

    /// Drops connections idle for longer than the idle timeout, every half of it, for as long
    /// as the pool exists; forgets instances left without idle connections (instances come
    /// and go with discovery).
    fn start_reaper(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.reaper.store(false, Ordering::Relaxed);
            return;
        };
        let pool: Weak<Self> = Arc::downgrade(self);
        let every = (self.idle_timeout / 2).max(Duration::from_millis(100));
        rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                let stale: Vec<Pooled> = {
                    let mut hosts = pool.hosts();
                    let mut stale = Vec::new();
                    for h in hosts.iter_mut() {
                        let fresh = h
                            .idle
                            .partition_point(|c| c.since.elapsed() >= pool.idle_timeout);
                        stale.extend(h.idle.drain(..fresh));
                    }
                    hosts.retain(|h| !h.idle.is_empty());
                    stale
                };
                drop(stale);
            }
        });
    }
}
