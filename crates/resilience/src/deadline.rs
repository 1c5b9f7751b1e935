//! Deadlines: the point in time after which nobody is waiting for a call's answer any more.
//!
//! A deadline travels inside a process as a [`Deadline`] request extension and between
//! processes as the remaining budget in milliseconds in [`DEADLINE_HEADER`]. A relative budget
//! (rather than an absolute time) is sent because hosts' clocks disagree; the cost is that time
//! on the wire is not subtracted, which errs on the side of a slightly longer deadline.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request};
use tokio::time::Instant;

use crate::Error;

/// The header that carries the remaining budget, in whole milliseconds, to the next hop.
pub const DEADLINE_HEADER: &str = "x-flotilla-deadline-ms";

/// The largest budget accepted from a caller (one day): anything larger is treated as a typo.
pub const MAX_PROPAGATED: Duration = Duration::from_secs(24 * 3600);

/// The instant by which a call must have completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    /// The time left, zero when the deadline passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.0
    }

    /// Reads the budget a caller sent; malformed or absurd values are ignored, as an untrusted
    /// header must not be able to fail a request.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let ms: u64 = headers.get(DEADLINE_HEADER)?.to_str().ok()?.parse().ok()?;
        let budget = Duration::from_millis(ms);
        (budget <= MAX_PROPAGATED).then(|| Self::after(budget))
    }

    /// The earlier of this deadline and `other`.
    pub fn min(self, other: Option<Deadline>) -> Self {
        other.map_or(self, |o| std::cmp::min(self, o))
    }
}

/// Writes the remaining budget of the request's [`Deadline`] extension into its headers, right
/// before it is sent. Fails with [`Error::DeadlineExceeded`] (and the request must not be sent)
/// when no whole millisecond is left.
pub fn propagate<B>(request: &mut Request<B>) -> Result<(), Error> {
    let Some(deadline) = request.extensions().get::<Deadline>().copied() else {
        return Ok(());
    };
    let ms = deadline.remaining().as_millis();
    if ms == 0 {
        return Err(Error::DeadlineExceeded);
    }
    request
        .headers_mut()
        .insert(DEADLINE_HEADER, HeaderValue::from(ms as u64));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn propagate_writes_the_remaining_budget_and_refuses_when_spent() {
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_millis(300)));
        tokio::time::advance(Duration::from_millis(100)).await;
        propagate(&mut req).unwrap();
        assert_eq!(req.headers()[DEADLINE_HEADER], "200");
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(matches!(propagate(&mut req), Err(Error::DeadlineExceeded)));
    }

    #[tokio::test(start_paused = true)]
    async fn malformed_or_absurd_budgets_are_ignored() {
        for bad in ["-1", "abc", "99999999999999999999", "100000000"] {
            let mut h = HeaderMap::new();
            h.insert(DEADLINE_HEADER, HeaderValue::from_static(bad));
            assert_eq!(Deadline::from_headers(&h), None, "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert(DEADLINE_HEADER, HeaderValue::from_static("1500"));
        let d = Deadline::from_headers(&h).unwrap();
        assert_eq!(d.remaining(), Duration::from_millis(1500));
    }
}
