//! Two `flotilla up` processes whose gateways share their rate limits through the Redis server
//! on this machine (`[gateway.shared_rate_limits]`, a build with `--features redis`).
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{http, start_role, stop};

use flotilla_testkit::{Backend, backend, unique_name};

#[test]
fn two_platforms_configured_with_one_redis_admit_a_shared_quota_once() {
    let Some(url) = backend(Backend::Redis, "flotilla shared rate limits") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    // The upstream is never reached by a refused request; a refused-connection 502 still
    // proves the request was admitted.
    std::fs::write(
        &routes,
        "[[upstreams]]\nname = \"u\"\nurls = [\"http://127.0.0.1:9\"]\n\n[[routes]]\nname = \"api\"\n\
         prefix = \"/\"\nupstream = \"u\"\nrate_limit = { requests = 3, per = \"day\", shared = true }\n",
    )
    .unwrap();
    let prefix = unique_name("cli_rl");
    let env = [
        ("FLOTILLA_GATEWAY__SHARED_RATE_LIMITS__URL", url.as_str()),
        (
            "FLOTILLA_GATEWAY__SHARED_RATE_LIMITS__PREFIX",
            prefix.as_str(),
        ),
    ];
    let a = start_role("up", &dir.path().join("a"), &routes, &env);
    let b = start_role("up", &dir.path().join("b"), &routes, &env);
    let statuses: Vec<u16> = [&a, &b, &a, &b, &a, &b]
        .iter()
        .map(|up| http(up.gateway, "GET", "/x", "").0)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
    assert!(statuses[..3].iter().all(|s| *s != 429), "{statuses:?}");
    stop(a);
    stop(b);
}
