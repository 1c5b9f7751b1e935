//! The client's connection pool: HTTP/1 connections to each instance, each one driven by the
//! call that has it checked out.
//!
//! hyper-util's pooled client runs every connection in a task of its own: a call checks a
//! connection out under a lock keyed by a hash of scheme and authority, hands its request to
//! the connection's task over a channel, gets the response back over another and the body's
//! chunks over a third, so each call also wakes the connection's task and is woken by it.
//! Here an idle connection is only its socket and HTTP/1 state; the call that checks it out
//! polls it together with its own response and body, so the whole exchange runs in the
//! caller's task, and the connection goes back to the pool once the body is read. A call that
//! is cancelled drops the connection it holds (its state is unknown).
//!
//! Nothing polls an idle connection, so a connection the server has closed is found out when
//! it is checked out: it is polled once first, and one that has finished is dropped. A request
//! the connection refused before writing a byte (closed under it) goes to another connection.
//! A task per pool drops connections idle for longer than the idle timeout.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use flotilla_core::ServiceInstance;
use flotilla_core::instance::Scheme;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

const CLOSED: &str = "connection closed before the response was complete";

type Connection = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// Why a call through the pool failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made (nothing was sent).
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The exchange failed after the request may have been written.
    Transport(Box<dyn std::error::Error + Send + Sync>),
    /// The response body is longer than the limit.
    TooLarge,
}

/// Pooled connections to the instances of one service.
#[derive(Debug)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    hosts: RwLock<HashMap<String, Arc<Host>>>,
    idle_timeout: Duration,
    max_idle: usize,
    reaper: AtomicBool,
}

/// One instance: where to connect, its `Host` header, and its idle connections, most recently
/// used last.
#[derive(Debug)]
struct Host {
    address: String,
    port: u16,
    host: HeaderValue,
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    sender: http1::SendRequest<Full<Bytes>>,
    conn: Connection,
    since: Instant,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle").field("since", &self.since).finish()
    }
}

impl Pool {
    pub(crate) fn new(idle_timeout: Duration, max_idle: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                hosts: RwLock::default(),
                idle_timeout,
                max_idle,
                reaper: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `req` (its URI the path and query) to `instance` and reads the response body, up
    /// to `limit` bytes.
    pub(crate) async fn send(
        &self,
        instance: &ServiceInstance,
        mut req: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<Response<Bytes>, SendError> {
        if instance.scheme != Scheme::Http {
            return Err(SendError::Connect(
                format!("scheme {} is not supported; only http", instance.scheme).into(),
            ));
        }
        let host = self.host(instance)?;
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut().insert(header::HOST, host.host.clone());
        }
        loop {
            let (mut c, reused) = match host.checkout(self.shared.idle_timeout) {
                Some(c) => (c, true),
                None => (host.connect().await?, false),
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
                        Ok(_) => return Err(SendError::Transport(CLOSED.into())),
                        Err(mut e) => match e.take_message() {
                            Some(r) if reused => {
                                req = r;
                                continue;
                            }
                            _ => return Err(SendError::Transport(e.into_error().into())),
                        },
                    }
                }
            };
            let resp = match answer {
                Ok(resp) => resp,
                Err(mut e) => match e.take_message() {
                    // Refused before a byte was written: the connection closed under it.
                    Some(r) if reused => {
                        req = r;
                        continue;
                    }
                    _ => return Err(SendError::Transport(e.into_error().into())),
                },
            };
            let (parts, body) = resp.into_parts();
            let body = with(&mut c.conn, &mut done, Limited::new(body, limit).collect()).await;
            return match body {
                None => Err(SendError::Transport(CLOSED.into())),
                Some(Ok(body)) => {
                    if !done {
                        self.checkin(&host, c);
                    }
                    Ok(Response::from_parts(parts, body.to_bytes()))
                }
                Some(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                    Err(SendError::TooLarge)
                }
                Some(Err(e)) => Err(SendError::Transport(e)),
            };
        }
    }

    fn host(&self, instance: &ServiceInstance) -> Result<Arc<Host>, SendError> {
        let same = |h: &Host| h.address == instance.address && h.port == instance.port;
        {
            let hosts = self.shared.hosts.read().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = hosts.get(instance.id.as_str()).filter(|h| same(h)) {
                return Ok(h.clone());
            }
        }
        let value = if instance.address.contains(':') && !instance.address.starts_with('[') {
            format!("[{}]:{}", instance.address, instance.port)
        } else {
            format!("{}:{}", instance.address, instance.port)
        };
        let host = Arc::new(Host {
            address: instance.address.clone(),
            port: instance.port,
            host: HeaderValue::try_from(value).map_err(|e| SendError::Connect(e.into()))?,
            idle: Mutex::default(),
        });
        let mut hosts = self.shared.hosts.write().unwrap_or_else(|p| p.into_inner());
        // An instance that moved (same id, new address) starts over; its old connections go.
        let entry = hosts
            .entry(instance.id.clone())
            .and_modify(|h| {
                if !same(h) {
                    *h = host.clone();
                }
            })
            .or_insert(host);
        Ok(entry.clone())
    }

    fn checkin(&self, host: &Host, c: Idle) {
        {
            let mut idle = host.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() >= self.shared.max_idle {
                return;
            }
            idle.push(Idle {
                since: Instant::now(),
                ..c
            });
        }
        if !self.shared.reaper.swap(true, Ordering::Relaxed) {
            self.start_reaper();
        }
    }

    /// Drops connections idle for longer than the idle timeout, every half of it, for as long
    /// as the pool exists.
    fn start_reaper(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.shared.reaper.store(false, Ordering::Relaxed);
            return;
        };
        let shared: Weak<Shared> = Arc::downgrade(&self.shared);
        let every = (self.shared.idle_timeout / 2).max(Duration::from_millis(100));
        rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let hosts: Vec<Arc<Host>> = shared
                    .hosts
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .cloned()
                    .collect();
                for h in hosts {
                    h.idle
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .retain(|c| c.since.elapsed() < shared.idle_timeout);
                }
            }
        });
    }
}

impl Host {
    /// The most recently used idle connection that has not been idle too long.
    fn checkout(&self, idle_timeout: Duration) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let c = idle.pop()?;
        if c.since.elapsed() >= idle_timeout {
            // The rest were idle longer still.
            idle.clear();
            return None;
        }
        Some(c)
    }

    async fn connect(&self) -> Result<Idle, SendError> {
        let tcp = TcpStream::connect((self.address.as_str(), self.port))
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        // Requests are written whole; waiting to coalesce them only adds latency.
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        Ok(Idle {
            sender,
            conn,
            since: Instant::now(),
        })
    }
}

/// Whether an idle connection is still open and ready for a request: polled once, a
/// connection the server closed has finished.
async fn ready(c: &mut Idle) -> bool {
    let finished = poll_fn(|cx| Poll::Ready(Pin::new(&mut c.conn).poll(cx).is_ready())).await;
    if finished {
        return false;
    }
    let mut done = false;
    let sender = &mut c.sender;
    let ready = with(&mut c.conn, &mut done, poll_fn(|cx| sender.poll_ready(cx))).await;
    !done && matches!(ready, Some(Ok(())))
}

/// Runs `fut` while polling `conn`, which reads and writes for it. `None` when the connection
/// finished first and `fut`, waiting on it, cannot finish any more; `done` is then set (a
/// finished connection is not polled again).
async fn with<F: Future>(conn: &mut Connection, done: &mut bool, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if *done || Pin::new(&mut *conn).poll(cx).is_ready() {
            *done = true;
            // What the connection said last (an error, the end of the body) is in `fut` now.
            return Poll::Ready(match fut.as_mut().poll(cx) {
                Poll::Ready(out) => Some(out),
                Poll::Pending => None,
            });
        }
        Poll::Pending
    })
    .await
}
