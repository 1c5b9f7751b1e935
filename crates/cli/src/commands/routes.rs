//! `flotilla routes ls|show`: the gateway's routes from `/api/v1/gateway/routes`, each with
//! its live request rate (the gateway's `requests_total` counters on `/metrics`, read twice
//! `--window` apart) and the circuit breakers of its upstream's instances
//! (`/api/v1/gateway/upstreams`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use serde_json::{Value, json};

use super::admin::run_with;
use crate::Failure;
use crate::admin::{Api, print};
use crate::cli::{ApiArgs, RoutesCommand};
use crate::out;

pub(crate) fn run(cmd: RoutesCommand, args: &ApiArgs) -> Result<(), Failure> {
    let json = args.json;
    match cmd {
        RoutesCommand::Ls { window } => run_with(args, async |api| {
            let routes = live(&api, window).await?;
            match json {
                true => out::json(&json!({ "routes": routes })),
                false => print(&Value::Array(routes.iter().map(row).collect()), None, false),
            }
            Ok(())
        }),
        RoutesCommand::Show { name, window } => run_with(args, async |api| {
            let routes = live(&api, window).await?;
            let Some(route) = routes.into_iter().find(|r| r["name"] == name.as_str()) else {
                bail!("no route named {name:?} (flotilla routes ls lists them)");
            };
            match json {
                true => out::json(&route),
                false => show(&route),
            }
            Ok(())
        }),
    }
}

/// Every route as the API describes it, plus `requests_per_second`, `errors_per_second`
/// (5xx) over `window`, and `instances`: its upstream's instances with their breakers.
async fn live(api: &Api, window: Duration) -> anyhow::Result<Vec<Value>> {
    let before = counts(&api.get_text("/metrics").await?);
    let started = tokio::time::Instant::now();
    let routes = api.get("/api/v1/gateway/routes").await?;
    let upstreams = api.get("/api/v1/gateway/upstreams").await?;
    tokio::time::sleep_until(started + window).await;
    let after = counts(&api.get_text("/metrics").await?);
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let rate = |name: &str, errors: bool| {
        let at = |c: &BTreeMap<(String, bool), f64>| {
            let all = c.get(&(name.to_owned(), false)).copied().unwrap_or(0.0);
            let failed = c.get(&(name.to_owned(), true)).copied().unwrap_or(0.0);
            if errors { failed } else { all + failed }
        };
        ((at(&after) - at(&before)).max(0.0) / secs * 10.0).round() / 10.0
    };
    let mut list: Vec<Value> = routes["routes"].as_array().cloned().unwrap_or_default();
    for route in &mut list {
        let name = route["name"].as_str().unwrap_or_default().to_owned();
        let upstream = &route["config"]["upstream"];
        let instances = upstreams["upstreams"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| &u["name"] == upstream)
            .map_or(json!([]), |u| u["instances"].clone());
        route["requests_per_second"] = json!(rate(&name, false));
        route["errors_per_second"] = json!(rate(&name, true));
        route["instances"] = instances;
    }
    Ok(list)
}

/// Requests answered per (route, is 5xx), from the Prometheus text of `/metrics`
/// (`gateway_requests_total{route="...",class="2xx"} 12`).
fn counts(metrics: &str) -> BTreeMap<(String, bool), f64> {
    let mut map = BTreeMap::new();
    for line in metrics.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(labels) = series
            .strip_prefix("gateway_requests_total{")
            .and_then(|l| l.strip_suffix('}'))
        else {
            continue;
        };
        let label = |key: &str| {
            labels.split(',').find_map(|kv| {
                kv.strip_prefix(key)
                    .and_then(|v| v.strip_prefix("=\""))
                    .and_then(|v| v.strip_suffix('"'))
            })
        };
        let (Some(route), Ok(n)) = (label("route"), value.parse::<f64>()) else {
            continue;
        };
        let failed = label("class") == Some("5xx");
        *map.entry((route.to_owned(), failed)).or_insert(0.0) += n;
    }
    map
}

/// One line of `routes ls`: what it matches, where it goes, how busy and how healthy.
fn row(r: &Value) -> Value {
    let c = &r["config"];
    json!({
        "name": r["name"],
        "methods": methods(c),
        "match": c["prefix"].as_str().map(|p| format!("{p}/*")).or(c["path"].as_str().map(str::to_owned)),
        "upstream": c["upstream"],
        "req_per_s": r["requests_per_second"],
        "5xx_per_s": r["errors_per_second"],
        "breakers": breakers(&r["instances"]),
        "auth": c["auth"]["jwt"].as_str().map(|j| format!("jwt:{j}")),
        "limit": limit(&c["rate_limit"]),
    })
}

fn methods(c: &Value) -> String {
    let list: Vec<&str> = c["methods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if list.is_empty() {
        "*".into()
    } else {
        list.join(",")
    }
}

fn limit(l: &Value) -> Option<String> {
    Some(format!(
        "{}/{}",
        l["requests"].as_u64()?,
        l["per"].as_str()?
    ))
}

/// `closed 2`, `open 1, closed 1`, or `no instances`: how many instances' breakers are in
/// each state.
fn breakers(instances: &Value) -> String {
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for i in instances.as_array().into_iter().flatten() {
        let state = i["breaker"].as_str().unwrap_or("closed").to_owned();
        *by_state.entry(state).or_default() += 1;
    }
    if by_state.is_empty() {
        return "no instances".into();
    }
    let parts: Vec<String> = by_state
        .into_iter()
        .rev()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    parts.join(", ")
}

/// `routes show`: the route's summary line by line, its configuration, then its instances.
fn show(r: &Value) {
    let summary = row(r);
    for (key, value) in summary.as_object().into_iter().flatten() {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        out::line(format_args!("{:<10} {text}", format!("{key}:")));
    }
    out::line(format_args!("config:    {}", r["config"]));
    out::line("");
    print(&r["instances"], None, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counters_are_summed_per_route_with_5xx_apart() {
        let text = "# TYPE gateway_requests_total counter\n\
            gateway_requests_total{route=\"users-read\",class=\"2xx\"} 10\n\
            gateway_requests_total{route=\"users-read\",class=\"4xx\"} 2\n\
            gateway_requests_total{route=\"users-read\",class=\"5xx\"} 1\n\
            gateway_request_duration_seconds_count{route=\"users-read\"} 13\n";
        let c = counts(text);
        assert_eq!(c[&("users-read".to_owned(), false)], 12.0);
        assert_eq!(c[&("users-read".to_owned(), true)], 1.0);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn breakers_count_instances_per_state() {
        let instances =
            json!([{ "breaker": "open" }, { "breaker": "closed" }, { "breaker": "closed" }]);
        assert_eq!(breakers(&instances), "open 1, closed 2");
        assert_eq!(breakers(&json!([])), "no instances");
    }
}
