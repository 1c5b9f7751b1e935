//! [`RedisRateLimiter`]: the shared rate-limiter contract of `flotilla-resilience` on one Redis
//! server (feature `ratelimit`). Each request is one script call (`lua/gcra.lua`) that reads
//! the server's clock, applies the GCRA step to the caller's key and stores the new
//! theoretical arrival time with a `PX` expiry, atomically. One key per script call, so it
//! also works against Redis Cluster.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_resilience::Error as LimitError;
use flotilla_resilience::shared_rate_limit::{Decision, Quota, SharedRateLimiter};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::Error;

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/gcra.lua")));

/// Where the limiter keeps its state (the `[gateway.shared_rate_limits]` section).
#[derive(Debug, Clone)]
pub struct RateLimitOptions {
    /// Server URL. Default `redis://127.0.0.1:6379`.
    pub url: String,
    /// First part of every key (`<prefix>:rl:<key>`). Letters, digits, `_` and `-`.
    /// Default `flotilla`.
    pub prefix: String,
    /// Longest wait for a connection, and for one answer on it. Callers bound each call more
    /// tightly themselves; this only keeps a dead connection from lingering. Default 1 s.
    pub io_timeout: Duration,
}

impl Default for RateLimitOptions {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "flotilla".into(),
            io_timeout: Duration::from_secs(1),
        }
    }
}

/// A [`SharedRateLimiter`] on Redis; clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// Checks the options and prepares the connection without opening it: the limiter is
    /// usable while Redis is down (each call then fails with `LimiterUnavailable` and the
    /// caller's failure policy applies) and connects, and reconnects, in the background.
    /// Needs a tokio runtime.
    pub fn new(opts: &RateLimitOptions) -> Result<Self, Error> {
        if opts.prefix.is_empty()
            || !(opts.prefix.chars()).all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::Config {
                option: "prefix",
                reason: "must be non-empty letters, digits, '_' or '-'".into(),
            });
        }
        let connect_err = |e: redis::RedisError| Error::Connect {
            url: opts.url.clone(),
            reason: e.to_string(),
        };
        let client = redis::Client::open(opts.url.as_str()).map_err(connect_err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.io_timeout))
            .set_response_timeout(Some(opts.io_timeout));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(connect_err)?;
        Ok(Self {
            conn,
            prefix: opts.prefix.clone(),
        })
    }
}

#[async_trait]
impl SharedRateLimiter for RedisRateLimiter {
    async fn acquire(&self, key: &str, quota: &Quota) -> Result<Decision, LimitError> {
        let interval = u64::try_from(quota.emission_interval().as_micros()).unwrap_or(u64::MAX);
        let mut conn = self.conn.clone();
        let answer: Vec<u64> = GCRA
            .key(format!("{}:rl:{key}", self.prefix))
            .arg(interval)
            .arg(quota.burst())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| LimitError::LimiterUnavailable(format!("Redis: {e}")))?;
        decision(&answer)
    }
}

/// Reads the script's `{allowed, remaining, retry_after_us, reset_after_us}`.
fn decision(answer: &[u64]) -> Result<Decision, LimitError> {
    let &[allowed, remaining, retry_after, reset_after] = answer else {
        return Err(LimitError::LimiterUnavailable(format!(
            "Redis: unexpected script answer {answer:?}"
        )));
    };
    Ok(Decision {
        allowed: allowed == 1,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        retry_after: Duration::from_micros(retry_after),
        reset_after: Duration::from_micros(reset_after),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_prefix_is_named_and_a_malformed_answer_is_an_error() {
        let opts = RateLimitOptions {
            prefix: "a:b".into(),
            ..RateLimitOptions::default()
        };
        let e = RedisRateLimiter::new(&opts).unwrap_err().to_string();
        assert!(e.contains("prefix"), "{e}");
        assert!(decision(&[1, 2]).is_err());
        let d = decision(&[0, 0, 1_500_000, 3_000_000]).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(1500));
    }
}
