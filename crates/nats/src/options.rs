//! Configuration of the JetStream backend (the `[bus.nats]` section).

use std::time::Duration;

use crate::Error;

/// How the bus maps onto JetStream. Every field has a documented default.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server URL. Default `nats://127.0.0.1:4222`.
    pub url: String,
    /// Name of the one stream holding the bus, and the first token of every subject it uses
    /// (`<prefix>.ev.<topic>`, `<prefix>.delayed.<topic>`, `<prefix>.dlq.<group>`).
    /// Letters, digits, `_` and `-`. Default `flotilla`.
    pub prefix: String,
    /// Window in which a second publish with the same (source, id) is dropped by the server
    /// (`Nats-Msg-Id`). Default 2 minutes.
    pub dedupe_window: Duration,
    /// The consumers' `ack_wait`: the lease granularity. Leases asked for in `receive` that
    /// are longer are extended by "work in progress" messages; shorter ones end at this time
    /// (the redelivery delay after a consumer crash). Default 5 s.
    pub ack_wait: Duration,
    /// How long events stay in the stream (JetStream limits retention). Default 7 days.
    pub max_age: Duration,
    /// Replicas of the stream (1 on a single server). Default 1.
    pub replicas: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            prefix: "flotilla".into(),
            dedupe_window: Duration::from_secs(120),
            ack_wait: Duration::from_secs(5),
            max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
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
        if self.ack_wait < Duration::from_millis(100) {
            return bad("ack_wait", "must be at least 100ms");
        }
        if self.dedupe_window.is_zero() {
            return bad("dedupe_window", "must be positive");
        }
        if self.max_age < self.dedupe_window {
            return bad("max_age", "must be at least dedupe_window");
        }
        if self.replicas == 0 || self.replicas > 5 {
            return bad("replicas", "must be 1 to 5");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_prefix_is_named() {
        assert!(Options::default().validate().is_ok());
        let o = Options {
            prefix: "a.b".into(),
            ..Options::default()
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("prefix"), "{e}");
    }
}
