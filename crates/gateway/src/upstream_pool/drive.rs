//! Polling a connection alongside what waits on it: the connection does the reading and
//! writing, the future (a request's answer, a sender's readiness) only receives.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;

use super::{Connection, Idle};

/// Whether an idle connection is still open and ready for a request: polled once, a
/// connection the upstream closed has finished.
pub(super) async fn ready(c: &mut Idle) -> bool {
    let first = poll_fn(|cx| {
        if Pin::new(&mut c.conn).poll(cx).is_ready() {
            return Poll::Ready(Some(false));
        }
        // Usually ready at once: it was when it went back to the pool.
        Poll::Ready(match c.sender.poll_ready(cx) {
            Poll::Ready(r) => Some(r.is_ok()),
            Poll::Pending => None,
        })
    })
    .await;
    if let Some(ready) = first {
        return ready;
    }
    let mut done = false;
    let sender = &mut c.sender;
    let ready = with(&mut c.conn, &mut done, poll_fn(|cx| sender.poll_ready(cx))).await;
    !done && matches!(ready, Some(Ok(())))
}

/// Runs `fut` while polling `conn`, which reads and writes for it. `None` when the connection
/// finished first and `fut`, waiting on it, cannot finish any more; `done` is then set (a
/// finished connection is not polled again).
pub(super) async fn with<F: Future>(
    conn: &mut Connection,
    done: &mut bool,
    fut: F,
) -> Option<F::Output> {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        // The connection first: what it reads now (the answer) is then ready for `fut`,
        // without another round through the scheduler.
        if !*done && Pin::new(&mut *conn).poll(cx).is_ready() {
            *done = true;
        }
        match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            // What the connection said last (an error, the answer) would be in `fut` now.
            Poll::Pending if *done => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
