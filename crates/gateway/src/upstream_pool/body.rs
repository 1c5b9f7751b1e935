//! The response body handed to the proxy: it owns the connection the response came on and
//! polls it while streaming, and gives it back to the pool once the body ended cleanly.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use super::{Inner, Key, PoolError, Pooled};
use crate::problem::BoxError;

/// An upstream response body; while it streams, it drives the connection it arrives on.
pub(crate) struct PooledBody {
    inner: Incoming,
    /// The connection, until the body ends (back to the pool) or fails (dropped). `None` for
    /// a body whose connection is already back or is driven elsewhere (an upgrade's).
    held: Option<Held>,
    /// An error held back for one poll (see [`PooledBody::fail`]).
    failed: Option<BoxError>,
}

/// A checked-out connection, and where it goes back to.
pub(super) struct Held {
    conn: Pooled,
    /// The connection future finished: it is closed and not polled again.
    done: bool,
    pool: Arc<Inner>,
    key: Key,
}

impl Held {
    pub(super) fn new(conn: Pooled, done: bool, pool: Arc<Inner>, key: Key) -> Self {
        Self {
            conn,
            done,
            pool,
            key,
        }
    }

    /// Polls the connection: it reads the body's next bytes (and writes the rest of the
    /// request body, when the upstream answered before reading it all).
    fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.done && Pin::new(&mut self.conn.conn).poll(cx).is_ready() {
            self.done = true;
        }
    }

    /// Back to the pool after a complete response, if the connection can take another
    /// request now: open (no `Connection: close`, no error) and done writing this request.
    /// One still writing would make the next request wait on this one's client.
    fn release(mut self, cx: &mut Context<'_>) {
        self.drive(cx);
        if self.done {
            return;
        }
        if let Poll::Ready(Ok(())) = self.conn.sender.poll_ready(cx) {
            self.pool.checkin(self.key, self.conn);
        }
    }
}

/// The response with its body: a body that is already complete (a bodyless request answered
/// without content) gives its connection back at once, as nothing may ever poll it.
pub(super) async fn respond(
    resp: Response<Incoming>,
    held: Held,
    bodyless: bool,
) -> Response<PooledBody> {
    let (parts, inner) = resp.into_parts();
    let held = if bodyless && inner.is_end_stream() {
        let mut held = Some(held);
        poll_fn(|cx| {
            if let Some(h) = held.take() {
                h.release(cx);
            }
            Poll::Ready(())
        })
        .await;
        None
    } else {
        Some(held)
    };
    Response::from_parts(
        parts,
        PooledBody {
            inner,
            held,
            failed: None,
        },
    )
}

impl PooledBody {
    /// A body whose connection the pool does not hold.
    pub(super) fn detached(inner: Incoming) -> Self {
        Self {
            inner,
            held: None,
            failed: None,
        }
    }

    /// Fails the body on its next poll, not this one. hyper's server closes the client's
    /// connection on a body error without flushing what it has buffered, so a response whose
    /// upstream failed right after the head (or a chunk) would reach the client as no answer
    /// at all; answering `Pending` once lets it flush, then the client sees the body fail.
    fn fail(
        &mut self,
        e: BoxError,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.held = None;
        self.failed = Some(e);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        if let Some(h) = this.held.as_mut() {
            h.drive(cx);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // hyper's server stops polling a body once it has written the length it
                // announced: the end is seen with the last frame, not on a poll after it.
                if this.inner.is_end_stream()
                    && let Some(h) = this.held.take()
                {
                    h.release(cx);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(e.into(), cx),
            Poll::Ready(None) => {
                if let Some(h) = this.held.take() {
                    h.release(cx);
                }
                Poll::Ready(None)
            }
            // The connection closed and the body still waits for bytes: they will not come.
            // Never a short success: the client must see the body fail.
            Poll::Pending if this.held.as_ref().is_some_and(|h| h.done) => {
                this.fail(PoolError::Closed.into(), cx)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // A body still holding its connection ends through `poll_frame`, which releases it.
        self.held.is_none() && self.failed.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
