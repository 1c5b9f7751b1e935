//! What the saga tests share: the `order` saga's definition against service `shop`, a
//! platform role started with it, and what the tests' participants (each its own axum
//! service, since each records different things) read from a step's call.

use std::path::Path;

use axum::http::HeaderMap;

use super::{Up, start_role};

/// The two-step `order` saga on service `shop`: reserve (undone by DELETE of its key), then
/// charge `charge_body`. The retry policies are what the tests vary.
pub(crate) struct OrderSaga {
    /// Attempts of each action, and of the reservation's compensation.
    pub(crate) attempts: u32,
    pub(crate) compensation_attempts: u32,
    /// First backoff of every retry (the maximum is 200 ms).
    pub(crate) base_delay: &'static str,
    /// The charge's JSON body, as a TOML inline table.
    pub(crate) charge_body: &'static str,
}

impl OrderSaga {
    pub(crate) fn definition(&self) -> String {
        let OrderSaga {
            attempts,
            compensation_attempts,
            base_delay,
            charge_body,
        } = self;
        let retry = |n| {
            format!(
                "{{ max_attempts = {n}, base_delay = \"{base_delay}\", max_delay = \"200ms\" }}"
            )
        };
        let (retry, compensation_retry) = (retry(attempts), retry(compensation_attempts));
        format!(
            r#"
name = "order"
version = 1

[[steps]]
name = "reserve"
timeout = "5s"
retry = {retry}
compensation_retry = {compensation_retry}

[steps.action.http]
service = "shop"
method = "POST"
path = "/reservations"
body = {{ order = "{{{{data.order}}}}" }}

[steps.compensation.http]
service = "shop"
method = "DELETE"
path = "/reservations/{{{{steps.reserve.key}}}}"

[[steps]]
name = "charge"
timeout = "5s"
retry = {retry}

[steps.action.http]
service = "shop"
method = "POST"
path = "/payments"
body = {charge_body}
"#
        )
    }
}

/// `flotilla <role>` with `definition` as the only saga definition file (under `dir/sagas`),
/// no routes, its data in `dir/data`, and `env` added.
pub(crate) fn start_with_saga(
    role: &str,
    dir: &Path,
    definition: &str,
    env: &[(&str, &str)],
) -> Up {
    let defs = dir.join("sagas");
    std::fs::create_dir_all(&defs).unwrap();
    std::fs::write(defs.join("order.toml"), definition).unwrap();
    let routes = dir.join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    let pattern = format!("[{:?}]", defs.join("*.toml").display().to_string());
    let mut all = vec![("FLOTILLA_SAGAS__DEFINITIONS", pattern.as_str())];
    all.extend_from_slice(env);
    start_role(role, &dir.join("data"), &routes, &all)
}

/// The idempotency key a saga step's call carries (empty without one).
pub(crate) fn idempotency_key(headers: &HeaderMap) -> String {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
