//! Validated names: service names, topic names and patterns, stream ids.
//!
//! Names arrive from configuration, HTTP bodies and URLs, so each type is only constructible
//! through validation, and every refusal names the kind of name, the bad value and the rule it
//! broke. Names serialize as plain strings and validate again when deserialized.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a name was refused. `Display` names the kind, the value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct NameError {
    /// What the value was meant to be ("service name", "topic", ...).
    pub what: &'static str,
    /// The refused value, truncated to 80 characters so hostile input cannot flood logs.
    pub value: String,
    /// The rule it broke.
    pub reason: String,
}

impl NameError {
    fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        let value = value.chars().take(80).collect();
        Self {
            what,
            value,
            reason: reason.into(),
        }
    }
}

macro_rules! string_name {
    ($(#[$doc:meta])* $ty:ident, $validate:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            /// Validates `value` and wraps it.
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                $validate(&value)?;
                Ok(Self(value))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_name!(
    /// A service name: 1 to 63 characters of lowercase ASCII letters, digits and `-`, starting
    /// with a letter and not ending with `-` (a DNS label, so names work in DNS and in Consul).
    ServiceName,
    validate_service_name
);

string_name!(
    /// A topic: up to 255 characters, dot-separated segments of ASCII letters, digits, `_` and
    /// `-` (`orders.created`). No wildcards: see [`TopicPattern`].
    TopicName,
    validate_topic
);

string_name!(
    /// A topic pattern for subscriptions: a topic whose segments may also be `*` (exactly one
    /// segment) or, as the last segment, `>` (one or more segments).
    TopicPattern,
    validate_topic_pattern
);

string_name!(
    /// An event-store stream id: 1 to 200 characters of ASCII letters, digits and `_-.:@`, not
    /// starting with `$` (reserved). The category is the part before the first `-`
    /// (`order-123` is in category `order`).
    StreamId,
    validate_stream_id
);

const SERVICE: &str = "service name";
const TOPIC: &str = "topic";
const PATTERN: &str = "topic pattern";
const STREAM: &str = "stream id";

fn validate_service_name(v: &str) -> Result<(), NameError> {
    let err = |r: &str| Err(NameError::new(SERVICE, v, r));
    if v.is_empty() || v.len() > 63 {
        return err("must be 1 to 63 characters long");
    }
    if !v.starts_with(|c: char| c.is_ascii_lowercase()) {
        return err("must start with a lowercase letter");
    }
    if v.ends_with('-') {
        return err("must not end with '-'");
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return err("may contain only lowercase letters, digits and '-'");
    }
    Ok(())
}

fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn validate_segments(what: &'static str, v: &str, wildcards: bool) -> Result<(), NameError> {
    let err = |r: String| Err(NameError::new(what, v, r));
    if v.is_empty() || v.len() > 255 {
        return err("must be 1 to 255 characters long".into());
    }
    let segments: Vec<&str> = v.split('.').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() {
            return err("has an empty segment (two dots, or a leading or trailing dot)".into());
        }
        let wildcard_ok = wildcards && (*seg == "*" || (*seg == ">" && i == last));
        if wildcard_ok {
            continue;
        }
        if *seg == ">" && wildcards {
            return err("'>' may only be the last segment".into());
        }
        if !seg.chars().all(is_segment_char) {
            let allowed = if wildcards {
                ", '_', '-', or a lone '*' or '>'"
            } else {
                ", '_' and '-'"
            };
            return err(format!(
                "segment {seg:?} may contain only ASCII letters, digits{allowed}"
            ));
        }
    }
    Ok(())
}

fn validate_topic(v: &str) -> Result<(), NameError> {
    validate_segments(TOPIC, v, false)
}

fn validate_topic_pattern(v: &str) -> Result<(), NameError> {
    validate_segments(PATTERN, v, true)
}

fn validate_stream_id(v: &str) -> Result<(), NameError> {
    let err = |r: &str| Err(NameError::new(STREAM, v, r));
    if v.is_empty() || v.len() > 200 {
        return err("must be 1 to 200 characters long");
    }
    if v.starts_with('$') {
        return err("must not start with '$' (reserved for system streams)");
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "_-.:@".contains(c);
    if !v.chars().all(ok) {
        return err("may contain only ASCII letters, digits and '_', '-', '.', ':', '@'");
    }
    Ok(())
}

impl TopicPattern {
    /// Whether `topic` matches this pattern.
    pub fn matches(&self, topic: &TopicName) -> bool {
        let mut pat = self.0.split('.');
        let mut top = topic.as_str().split('.');
        loop {
            match (pat.next(), top.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(p), Some(t)) if p == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    /// Whether the pattern contains a wildcard.
    pub fn is_literal(&self) -> bool {
        !self.0.split('.').any(|s| s == "*" || s == ">")
    }
}

impl From<TopicName> for TopicPattern {
    fn from(t: TopicName) -> Self {
        // Every valid topic is a valid literal pattern.
        Self(t.0)
    }
}

impl StreamId {
    /// The stream's category: the part before the first `-`, or the whole id when it has none.
    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or(self.0.as_str(), |(c, _)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_follow_dns_label_rules() {
        assert!(ServiceName::new("users").is_ok());
        assert!(ServiceName::new("order-service2").is_ok());
        for bad in ["", "Users", "1users", "users-", "us_ers", &"a".repeat(64)] {
            let e = ServiceName::new(bad).unwrap_err();
            assert_eq!(e.what, "service name", "{bad}");
        }
    }

    #[test]
    fn name_error_names_the_value_and_rule() {
        let e = ServiceName::new("Bad Name").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("service name") && msg.contains("\"Bad Name\""),
            "{msg}"
        );
    }

    #[test]
    fn topics_refuse_empty_segments_and_wildcards() {
        assert!(TopicName::new("orders.created").is_ok());
        for bad in [
            "",
            "orders..created",
            ".orders",
            "orders.",
            "orders.*",
            "a b",
        ] {
            assert!(TopicName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_match_single_and_tail_wildcards() {
        let t = |s: &str| TopicName::new(s).unwrap();
        let p = |s: &str| TopicPattern::new(s).unwrap();
        assert!(p("orders.*").matches(&t("orders.created")));
        assert!(!p("orders.*").matches(&t("orders.created.v2")));
        assert!(p("orders.>").matches(&t("orders.created.v2")));
        assert!(!p("orders.>").matches(&t("orders")));
        assert!(p("orders.created").matches(&t("orders.created")));
        assert!(!p("orders.created").matches(&t("orders.updated")));
        assert!(TopicPattern::new("orders.>.x").is_err());
        assert!(!p("*.created").is_literal());
    }

    #[test]
    fn stream_category_is_prefix_before_first_dash() {
        assert_eq!(StreamId::new("order-123").unwrap().category(), "order");
        assert_eq!(StreamId::new("order-12-3").unwrap().category(), "order");
        assert_eq!(StreamId::new("settings").unwrap().category(), "settings");
        assert!(StreamId::new("$all").is_err());
        assert!(StreamId::new("a/b").is_err());
    }

    #[test]
    fn names_validate_when_deserialized() {
        let ok: ServiceName = serde_json::from_str("\"users\"").unwrap();
        assert_eq!(ok.as_str(), "users");
        let err = serde_json::from_str::<ServiceName>("\"Users\"").unwrap_err();
        assert!(err.to_string().contains("invalid service name"));
    }
}
