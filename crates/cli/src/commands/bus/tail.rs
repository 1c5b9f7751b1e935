//! `flotilla events tail <pattern>`: follows events as they are published, through a
//! temporary group of its own so no real group loses an event.
//!
//! The group (`tail-<random>`) is declared for the pattern (so it sees events published from
//! now on), read over the SSE pull, each event printed then acked, and deleted on exit:
//! Ctrl-C, SIGTERM or the end of the stream. A `kill -9` leaves it behind; `flotilla groups
//! rm` removes it (docs/bus.md).

use anyhow::{Context as _, bail};
use flotilla_core::TopicPattern;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

use super::{run_with, seg};
use crate::Failure;
use crate::admin::{Api, STREAM_IDLE_LIMIT};
use crate::cli::ApiArgs;

/// Unacked events the server may send ahead of the printing.
const IN_FLIGHT: usize = 64;

pub(super) fn run(pattern: &str, ty: Option<&str>, args: &ApiArgs) -> Result<(), Failure> {
    TopicPattern::new(pattern)
        .map_err(|e| Failure::Usage(format!("pattern {pattern:?} is invalid: {e}")))?;
    run_with(args, async |api| {
        // Before the group exists, so a signal at any point after removes it on the way out.
        let signalled = crate::signals::stop_signal();
        let group = format!("tail-{:016x}", rand::random::<u64>());
        let path = format!("/api/v1/bus/groups/{}", seg(&group));
        let declare = json!({ "pattern": pattern });
        api.call(
            http::Method::PUT,
            &path,
            Some((declare, "application/json")),
        )
        .await
        .context("cannot declare the tail's group")?;
        let outcome = tokio::select! {
            r = follow(&api, &group, ty, args.json) => r,
            () = signalled => Ok(()),
        };
        // A reader that stopped (`| head`) ends the tail; it is not a failure.
        let outcome = outcome.or_else(|e| match crate::out::is_closed(&e) {
            true => Ok(()),
            false => Err(e),
        });
        if let Err(e) = api.call(http::Method::DELETE, &path, None).await {
            eprintln!(
                "flotilla: the tail's group {group} is left behind ({e:#}); \
                 remove it with `flotilla groups rm {group}`"
            );
        }
        outcome
    })
}

async fn follow(api: &Api, group: &str, ty: Option<&str>, json: bool) -> anyhow::Result<()> {
    let path = format!(
        "/api/v1/bus/groups/{}/events?max_in_flight={IN_FLIGHT}",
        seg(group)
    );
    let mut body = api.open_events(&path).await?;
    let mut parser = flotilla_core::sse::SseParser::default();
    // The server sends a keep-alive comment every 15 s: silence this long means the
    // connection is gone without a close.
    let silent =
        || anyhow::anyhow!("no data or keep-alive for {STREAM_IDLE_LIMIT:?}: the stream is gone");
    while let Some(frame) = tokio::time::timeout(STREAM_IDLE_LIMIT, body.frame())
        .await
        .map_err(|_| silent())?
    {
        let frame = frame.context("reading the event stream")?;
        let Some(chunk) = frame.data_ref() else {
            continue;
        };
        for event in parser.push(chunk)? {
            if event.is_server_error() {
                bail!("the event stream failed: {}", problem_detail(&event.data));
            }
            if event.name == "delivery" {
                handle(api, group, ty, json, &event.data).await?;
            }
        }
    }
    bail!("the control plane closed the event stream")
}

fn problem_detail(data: &str) -> String {
    serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| data.to_owned())
}

/// Prints one delivery (unless `--type` filters it out) and acks it.
async fn handle(
    api: &Api,
    group: &str,
    ty: Option<&str>,
    json: bool,
    data: &str,
) -> anyhow::Result<()> {
    let d: Value = serde_json::from_str(data).context("the server sent a malformed delivery")?;
    if ty.is_none_or(|t| d["event"]["type"].as_str() == Some(t)) {
        crate::out::try_line(line(&d, json))?;
    }
    let path = format!("/api/v1/bus/groups/{}/ack", seg(group));
    let receipt = json!({ "receipt": d["receipt"] });
    api.post(&path, receipt, "application/json")
        .await
        .context("cannot ack a tailed event")?;
    Ok(())
}

/// One line per event: JSON with `--json`, else `topic  type  id  data`.
fn line(d: &Value, json: bool) -> String {
    if json {
        let out = json!({
            "topic": d["topic"],
            "published_at_ms": d["published_at_ms"],
            "event": d["event"],
        });
        return out.to_string();
    }
    let e = &d["event"];
    let data = match (&e["data"], &e["data_base64"]) {
        (Value::Null, Value::String(b64)) => format!("<{} base64 chars>", b64.len()),
        (Value::Null, _) => String::new(),
        (v, _) => v.to_string(),
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    format!(
        "{}  {}  {}  {data}",
        text(&d["topic"]),
        text(&e["type"]),
        text(&e["id"])
    )
    .trim_end()
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_topic_type_id_and_data() {
        let d = json!({"topic": "orders.created", "receipt": "r",
            "event": {"type": "orders.created", "id": "o-1", "data": {"total": 3}}});
        assert_eq!(
            line(&d, false),
            "orders.created  orders.created  o-1  {\"total\":3}"
        );
        let as_json: Value = serde_json::from_str(&line(&d, true)).unwrap_or_default();
        assert_eq!(as_json["event"]["id"], "o-1");
        assert!(as_json.get("receipt").is_none());
    }
}
