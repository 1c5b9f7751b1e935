//! Configuration of the RabbitMQ backend (the `[bus.amqp]` section).

use std::time::Duration;

use crate::Error;

/// How the bus maps onto RabbitMQ. Every field has a documented default.
#[derive(Debug, Clone)]
pub struct Options {
    /// Broker URL. Default `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// First part of every exchange and queue name (`<prefix>.events`, `<prefix>.g.<group>`).
    /// Letters, digits, `_` and `-`. Default `flotilla`.
    pub prefix: String,
    /// Unacked messages one process holds per group (AMQP prefetch). Default 256.
    pub prefetch: u16,
    /// The quorum queues' own `x-delivery-limit`: a backstop far above any engine policy, so
    /// the engine's max deliveries always decide first and the two never stack; it only
    /// catches a message that kills its consumers before the engine sees a failure. What it
    /// catches is dead-lettered to the group's DLQ queue, never dropped. Default 100.
    pub delivery_limit: u32,
    /// How often expired leases are returned to the queue. Default 100 ms.
    pub lease_tick: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefix: "flotilla".into(),
            prefetch: 256,
            delivery_limit: 100,
            lease_tick: Duration::from_millis(100),
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
        if self.prefix.is_empty() || self.prefix.len() > 64 || !self.prefix.chars().all(ok) {
            return bad("prefix", "must be 1 to 64 letters, digits, '_' or '-'");
        }
        if self.prefetch == 0 {
            return bad("prefetch", "must be at least 1");
        }
        if self.delivery_limit < 2 {
            return bad("delivery_limit", "must be at least 2");
        }
        if self.lease_tick.is_zero() {
            return bad("lease_tick", "must be positive");
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
            prefix: "a.b".into(),
            ..Options::default()
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("prefix"), "{e}");
    }
}
