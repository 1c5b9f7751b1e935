//! `flotilla sagas ls|show|start|cancel|retry|definitions`: thin calls of `/api/v1/sagas`.
//! Tables lead with the saga's name; `--json` prints the API's answer as it is.

use serde_json::{Value, json};

use super::admin::{run_with, seg};
use crate::Failure;
use crate::admin::{Api, print};
use crate::cli::{ApiArgs, SagasCommand};
use crate::out;

pub(crate) fn run(cmd: SagasCommand, args: &ApiArgs) -> Result<(), Failure> {
    let json = args.json;
    match cmd {
        SagasCommand::Ls {
            name,
            status,
            limit,
        } => run_with(args, async |api| {
            let path = format!("/api/v1/sagas{}", query(name, status, limit));
            let res = api.get(&path).await?;
            table(&res, "sagas", row, json);
            Ok(())
        }),
        SagasCommand::Show { id } => run_with(args, async |api| show(&api, &id, json).await),
        SagasCommand::Start { name, data, id } => {
            let data: Value = serde_json::from_str(&data)
                .map_err(|e| Failure::Usage(format!("--data is not JSON: {e}")))?;
            let path = format!("/api/v1/sagas/{}", seg(&name));
            post(args, path, json!({ "data": data, "id": id }), "id")
        }
        SagasCommand::Cancel { id } => post(
            args,
            format!("/api/v1/sagas/{}/cancel", seg(&id)),
            json!({}),
            "status",
        ),
        SagasCommand::Retry { id } => post(
            args,
            format!("/api/v1/sagas/{}/retry", seg(&id)),
            json!({}),
            "status",
        ),
        SagasCommand::Definitions => run_with(args, async |api| {
            let res = api.get("/api/v1/sagas/definitions").await?;
            table(&res, "definitions", definition_row, json);
            Ok(())
        }),
    }
}

fn query(name: Option<String>, status: Option<String>, limit: Option<usize>) -> String {
    let pairs: Vec<String> = [
        name.map(|n| format!("name={}", seg(&n))),
        status.map(|s| format!("status={}", seg(&s))),
        limit.map(|l| format!("limit={l}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// The API's answer with `--json`, else a table of `key`'s rows shaped by `shape`.
fn table(res: &Value, key: &str, shape: fn(&Value) -> Value, json: bool) {
    if json {
        return out::json(res);
    }
    let rows: Vec<Value> = res[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(shape)
        .collect();
    print(&Value::Array(rows), None, false);
}

/// POSTs and prints the answer's `field` (the id of a start, so scripts can keep it; the
/// status after a cancel or retry), or the whole answer with `--json`.
fn post(args: &ApiArgs, path: String, body: Value, field: &str) -> Result<(), Failure> {
    let json = args.json;
    run_with(args, async |api| {
        let res = api.post(&path, body, "application/json").await?;
        match (&res[field], json) {
            (Value::String(s), false) => out::line(s),
            _ => out::json(&res),
        }
        Ok(())
    })
}

fn row(s: &Value) -> Value {
    json!({
        "name": s["definition"],
        "id": s["id"],
        "status": s["status"],
        "current_step": s["current_step"],
        "started_at": s["started_at"],
        "finished_at": s["finished_at"],
    })
}

fn definition_row(d: &Value) -> Value {
    let steps: Vec<&Value> = d["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| &s["name"])
        .collect();
    json!({ "name": d["name"], "version": d["version"], "steps": steps, "pivot": d["pivot"] })
}

/// The instance's status and error, its steps, then its timeline oldest first.
async fn show(api: &Api, id: &str, json: bool) -> anyhow::Result<()> {
    let res = api.get(&format!("/api/v1/sagas/{}", seg(id))).await?;
    if json {
        out::json(&res);
        return Ok(());
    }
    out::line(format_args!(
        "{} {}  status: {}{}",
        res["definition"].as_str().unwrap_or_default(),
        res["id"].as_str().unwrap_or_default(),
        res["status"].as_str().unwrap_or_default(),
        stuck_detail(&res),
    ));
    // The id to look the saga's step spans up by in a tracing UI.
    if let Some(trace_id) = res["trace_id"].as_str() {
        out::line(format_args!("trace: {trace_id}"));
    }
    table(&res, "steps", step_row, false);
    out::line("");
    table(&res, "timeline", timeline_row, false);
    Ok(())
}

fn stuck_detail(res: &Value) -> String {
    match (res["step"].as_str(), res["error"].as_str()) {
        (Some(step), Some(error)) => format!(" at {step}: {error}"),
        _ => String::new(),
    }
}

fn step_row(s: &Value) -> Value {
    json!({
        "name": s["name"],
        "status": s["phase"]["phase"],
        "attempts": s["attempts"],
        "compensation": s["compensation"]["phase"],
        "compensation_attempts": s["compensation_attempts"],
        "error": s["error"].as_str().or(s["compensation_error"].as_str()),
    })
}

/// The event's type leads as the row's name; its error (or reason) comes last as its data.
fn timeline_row(e: &Value) -> Value {
    let event = &e["event"];
    json!({
        "name": e["type"],
        "version": e["version"],
        "step": event["step"],
        "attempt": event["attempt"],
        "recorded_at": e["recorded_at"],
        "data": event["error"].as_str().or(event["reason"].as_str()),
    })
}
