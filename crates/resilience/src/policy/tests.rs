use std::time::Duration;

use super::*;
use crate::balance::Strategy;

const FILE: &str = r#"
[defaults]
timeout = "5s"
retry = { max_attempts = 3, base_delay = "10ms" }

[policies.critical]
timeout = "1s"
breaker = { consecutive_failures = 3, open_duration = "10s" }
balance = { strategy = "consistent_hash", hash_header = "x-user" }

[targets.users]
policy = "critical"
retry = { max_attempts = 2 }
bulkhead = { max_concurrent = 8, max_queue = 4 }
"#;

#[test]
fn precedence_is_builtin_then_defaults_then_named_policy_then_target() {
    let set = PolicySet::from_toml(FILE).unwrap();
    let users = set.resolve("users");
    assert_eq!(
        users.timeout,
        Duration::from_secs(1),
        "named policy beats defaults"
    );
    assert_eq!(users.retry.max_attempts, 2, "target beats defaults");
    assert_eq!(
        users.retry.backoff.base,
        Duration::from_millis(10),
        "defaults fill what the target leaves out"
    );
    assert_eq!(
        users.retry.statuses,
        vec![502, 503, 504],
        "built-in defaults fill the rest"
    );
    let breaker = users.breaker.unwrap();
    assert_eq!(breaker.consecutive_failures, Some(3));
    assert_eq!(breaker.open_duration, Duration::from_secs(10));
    assert_eq!(users.bulkhead, Some((8, 4)));
    assert_eq!(users.balance.strategy, Strategy::ConsistentHash);
    assert_eq!(users.hash_header.unwrap(), "x-user");

    let other = set.resolve("orders");
    assert_eq!(other.timeout, Duration::from_secs(5));
    assert_eq!(other.retry.max_attempts, 3);
    assert_eq!(other.bulkhead, None);
    assert_eq!(other.balance.strategy, Strategy::PeakEwma);
}

fn error_key(text: &str) -> String {
    match PolicySet::from_toml(text).unwrap_err() {
        crate::Error::InvalidPolicy { key, .. } => key,
        e => panic!("unexpected {e}"),
    }
}

#[test]
fn invalid_values_fail_at_load_naming_the_key() {
    assert_eq!(
        error_key("[policies.users.retry]\nmax_attempts = 0"),
        "policies.users.retry.max_attempts"
    );
    assert_eq!(
        error_key("[defaults]\ntimeout = \"5 parsecs\""),
        "defaults.timeout"
    );
    assert_eq!(
        error_key("[targets.a.breaker]\nfailure_rate = 1.5"),
        "targets.a.breaker.failure_rate"
    );
    assert_eq!(
        error_key("[targets.a]\npolicy = \"nope\""),
        "targets.a.policy"
    );
    assert_eq!(
        error_key("[policies.p]\npolicy = \"q\""),
        "policies.p.policy"
    );
    assert_eq!(
        error_key("[defaults.rate_limit]\nper_second = 5\nkey = \"ip\""),
        "defaults.rate_limit.key"
    );
    assert_eq!(
        error_key("[defaults.retry]\nbudget_ttl = \"2m\""),
        "defaults.retry.budget_ttl"
    );
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let e = PolicySet::from_toml("[defaults.retry]\nmax_attempt = 2").unwrap_err();
    assert!(e.to_string().contains("max_attempt"), "{e}");
}

#[test]
fn merged_levels_are_checked_together() {
    let text = "[defaults.retry]\nmax_delay = \"5ms\"\n[targets.a.retry]\nbase_delay = \"1s\"";
    assert_eq!(error_key(text), "targets.a.retry.base_delay");
}

#[test]
fn an_empty_file_resolves_to_the_builtin_defaults() {
    let set = PolicySet::from_toml("").unwrap();
    assert_eq!(set.resolve("anything"), ResolvedPolicy::default());
    assert!(set.resolve("anything").breaker.is_some());
}

#[test]
fn resolve_with_lays_overrides_on_a_named_policy() {
    let set = PolicySet::from_toml(FILE).unwrap();
    let over = PolicySpec {
        timeout: Some(Dur("250ms".into())),
        ..PolicySpec::default()
    };
    let p = set.resolve_with(Some("critical"), Some(&over)).unwrap();
    assert_eq!(p.timeout, Duration::from_millis(250));
    assert!(set.resolve_with(Some("missing"), None).is_err());
}
