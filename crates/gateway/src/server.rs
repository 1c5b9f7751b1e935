//! The client-facing listener: HTTP/1.1 and h2c on one port, or HTTPS with ALPN (`h2`,
//! `http/1.1`) when `[server.tls]` is set, with hyper's framing checks and the configured limits
//! (head size, header count, head read timeout, connection count, requests per connection).
//! A connection is shut down gracefully (HTTP/1.1: no keep-alive; HTTP/2: GOAWAY, open streams
//! finish) when the server stops or when it reaches `max_requests_per_connection`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::future::Future;
use std::pin::Pin;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::{self, Backoff};
use crate::config::ServerOptions;
use crate::problem::Body;
use crate::proxy;
use crate::state::Shared;

/// The parser's ceiling on header fields: twice `max_headers`, so a head over the configured
/// limit still reaches `proxy::admit` and gets a problem+json 431 rather than hyper's bare one.
/// (At or below 100 fields hyper keeps its header arrays on the stack; the ceiling of 200 that
/// the default limit gives costs two heap allocations per request, which is the price of that
/// answer. The allocation counts in docs/BENCHMARKS.md could not tell the two apart.)
fn parser_max_headers(max_headers: usize) -> usize {
    max_headers.saturating_mul(2)
}

fn builder(opts: &ServerOptions) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        // The parser's own limits are a hard ceiling above the configured ones, so a head
        // over the configured limits reaches `proxy::admit` and is answered with a problem
        // body; only heads past the ceiling get the parser's bare 414/431.
        .max_buf_size((opts.max_header_bytes + opts.max_uri_bytes).max(8192))
        .max_headers(parser_max_headers(opts.max_headers))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(opts.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    b
}

/// The connection cap shared by every listener of one gateway.
pub(crate) fn connection_permits(opts: &ServerOptions) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(opts.max_connections.max(1)))
}

/// Accepts connections until `shutdown`, then stops accepting and lets in-flight requests
/// finish (connections are asked to close after their current request).
/// `permits` caps the connections open at once (`max_connections`); worker runtimes share one.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: CancellationToken,
    permits: Arc<Semaphore>,
) -> std::io::Result<()> {
    let builder = Arc::new(builder(&shared.server));
    let connections = TaskTracker::new();
    let mut backoff = Backoff::default();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            () = shutdown.cancelled() => break,
        };
        let Some((stream, peer)) = accept::next(&listener, &mut backoff, &shutdown).await else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let (shared, builder) = (shared.clone(), builder.clone());
        // Cancelled by the server's shutdown, or by the connection itself at its request cap.
        let closing = shutdown.child_token();
        connections.spawn(async move {
            serve_client(shared, &builder, closing, stream, peer).await;
            drop(permit);
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Serves one accepted client: in cleartext, or over TLS after the handshake, which runs in
/// the connection's own task (so a slow handshake cannot stall accepts) and must finish
/// within `header_read_timeout`.
async fn serve_client(
    shared: Arc<Shared>,
    builder: &auto::Builder<TokioExecutor>,
    closing: CancellationToken,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let Some(tls) = shared.tls.clone() else {
        let svc = connection_service(shared, peer, false, closing);
        return serve_connection(builder, TokioIo::new(stream), svc).await;
    };
    let limit = shared.server.header_read_timeout;
    match tokio::time::timeout(limit, tls.acceptor().accept(stream)).await {
        Ok(Ok(stream)) => {
            let svc = connection_service(shared, peer, true, closing);
            serve_connection(builder, TokioIo::new(stream), svc).await;
        }
        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// Serves one connection (cleartext or TLS; HTTP/1.1 or HTTP/2 detected from the preface)
/// until it ends, shutting it down gracefully once its service's `closing` is cancelled.
async fn serve_connection<I>(builder: &auto::Builder<TokioExecutor>, io: I, svc: ConnService)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (peer, closing) = (svc.peer, svc.closing.clone());
    let mut conn = std::pin::pin!(builder.serve_connection_with_upgrades(io, svc));
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        () = closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, %peer, "client connection ended with an error");
    }
}

/// Marks a request that arrived over TLS (read by the proxy for `X-Forwarded-Proto`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverTls;

/// The per-connection service: counts requests so a connection past the limit is closed.
#[derive(Debug, Clone)]
struct ConnService {
    shared: Arc<Shared>,
    peer: SocketAddr,
    tls: bool,
    served: Arc<AtomicU64>,
    /// Cancelled to shut this connection down gracefully.
    closing: CancellationToken,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if self.tls {
            req.extensions_mut().insert(OverTls);
        }
        let shared = self.shared.clone();
        let peer = self.peer;
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let last = n >= shared.server.max_requests_per_connection.max(1);
        if last {
            // Ask the client to reconnect so one connection cannot hold a worker forever:
            // HTTP/2 ignores `Connection: close`, so the connection itself is shut down
            // gracefully (GOAWAY; streams already open finish).
            self.closing.cancel();
        }
        Box::pin(async move {
            let mut resp = proxy::handle(shared, peer, req).await;
            if last {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok(resp)
        })
    }
}

fn connection_service(
    shared: Arc<Shared>,
    peer: SocketAddr,
    tls: bool,
    closing: CancellationToken,
) -> ConnService {
    ConnService {
        shared,
        peer,
        tls,
        served: Arc::new(AtomicU64::new(0)),
        closing,
    }
}

#[cfg(test)]
mod tests {
    use super::parser_max_headers;

    #[test]
    fn the_parser_ceiling_stays_above_the_limit() {
        assert_eq!(parser_max_headers(20), 40);
        assert_eq!(parser_max_headers(100), 200);
        for n in 1..400 {
            assert!(parser_max_headers(n) > n, "{n}");
        }
    }
}
