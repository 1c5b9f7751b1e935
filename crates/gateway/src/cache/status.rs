//! The `Cache-Status` response header (RFC 9211).

use http::HeaderValue;

/// Why a request went to the origin (RFC 9211 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Nothing usable was stored.
    Miss,
    /// A stored response was stale and had to be revalidated.
    Stale,
    /// The request asked for revalidation (`no-cache`, `max-age=0`).
    Request,
    /// The request is one the cache does not handle (a range, a body, `If-Match`).
    Bypass,
    /// The method is not cacheable.
    Method,
}

/// What the cache did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from the store; `ttl` is negative for a stale response.
    Hit {
        /// Seconds of freshness left.
        ttl: i64,
        /// It waited for another request's fetch.
        collapsed: bool,
    },
    /// Sent to the origin.
    Forwarded {
        /// Why.
        why: Forward,
        /// The origin's status, when it differs from the response's (a 304 revalidation).
        status: Option<u16>,
        /// The response was stored.
        stored: bool,
    },
    /// `only-if-cached` found nothing usable: answered 504 without the origin.
    OnlyIfCachedMiss,
}

impl CacheStatus {
    /// The header value, with the cache named `flotilla`.
    pub fn header(&self) -> HeaderValue {
        let text = match *self {
            Self::Hit { ttl, collapsed } => {
                format!(
                    "flotilla; hit; ttl={ttl}{}",
                    if collapsed { "; collapsed" } else { "" }
                )
            }
            Self::Forwarded {
                why,
                status,
                stored,
            } => {
                let reason = match why {
                    Forward::Miss => "miss",
                    Forward::Stale => "stale",
                    Forward::Request => "request",
                    Forward::Bypass => "bypass",
                    Forward::Method => "method",
                };
                let mut t = format!("flotilla; fwd={reason}");
                if let Some(s) = status {
                    t.push_str(&format!("; fwd-status={s}"));
                }
                if stored {
                    t.push_str("; stored");
                }
                t
            }
            Self::OnlyIfCachedMiss => "flotilla; fwd=miss; detail=only-if-cached".into(),
        };
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("flotilla"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_rfc_9211() {
        let hit = CacheStatus::Hit {
            ttl: -3,
            collapsed: false,
        };
        assert_eq!(hit.header(), "flotilla; hit; ttl=-3");
        let reval = CacheStatus::Forwarded {
            why: Forward::Stale,
            status: Some(304),
            stored: true,
        };
        assert_eq!(
            reval.header(),
            "flotilla; fwd=stale; fwd-status=304; stored"
        );
        let miss = CacheStatus::Forwarded {
            why: Forward::Miss,
            status: None,
            stored: false,
        };
        assert_eq!(miss.header(), "flotilla; fwd=miss");
    }
}
