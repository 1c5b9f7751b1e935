//! Configuration of the Redis Streams backend (the `[bus.redis]` section).

use std::time::Duration;

use crate::Error;

/// How the bus maps onto Redis. Every field has a documented default.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server URL. Default `redis://127.0.0.1:6379`.
    pub url: String,
    /// First part of every key the bus uses (`<prefix>:s:<group>`, `<prefix>:dlq`, ...).
    /// Letters, digits, `_` and `-`. Default `flotilla`.
    pub prefix: String,
    /// Window in which a second publish with the same (source, id) is dropped. Default 2 min.
    pub dedupe_window: Duration,
    /// The longest a due delayed publish waits for the mover to route it (the mover sleeps
    /// until the next due time, but at most this long, to notice newer, earlier ones).
    /// Default 100 ms.
    pub mover_tick: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "flotilla".into(),
            dedupe_window: Duration::from_secs(120),
            mover_tick: Duration::from_millis(100),
        }
    }
}

impl Options {
    /// Checks every option, naming the first bad one.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |option, reason: &str| {
            Err(Error::Config {
                option,
                reason: reason.into(),
            })
        };
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if self.prefix.is_empty() || !self.prefix.chars().all(ok) {
            return bad("prefix", "must be non-empty letters, digits, '_' or '-'");
        }
        if self.dedupe_window < Duration::from_millis(1) {
            return bad("dedupe_window", "must be at least 1ms");
        }
        if self.mover_tick < Duration::from_millis(1) || self.mover_tick > Duration::from_secs(10) {
            return bad("mover_tick", "must be between 1ms and 10s");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_a_bad_prefix_is_named() {
        assert!(Options::default().validate().is_ok());
        let o = Options {
            prefix: "a:b".into(),
            ..Options::default()
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("prefix"), "{e}");
    }
}
