//! Event-bus admin commands: topics, events (publish, tail), groups and the dead-letter queue.

mod dlq;
mod tail;

use serde_json::{Value, json};

use super::admin::{run_with, seg};
use crate::Failure;
use crate::admin::print;
use crate::cli::{ApiArgs, DlqCommand, EventsCommand, GroupsCommand, TopicsCommand};
use crate::out;

pub(crate) fn topics(cmd: TopicsCommand, args: &ApiArgs) -> Result<(), Failure> {
    let TopicsCommand::Ls = cmd;
    run_with(args, async |api| {
        let topics = api.get("/api/v1/bus/topics").await?;
        print(&topics, Some("topics"), args.json);
        Ok(())
    })
}

pub(crate) fn events(cmd: EventsCommand, args: &ApiArgs) -> Result<(), Failure> {
    match cmd {
        EventsCommand::Publish {
            topic,
            ty,
            source,
            data,
        } => publish(&topic, ty, source, &data, args),
        EventsCommand::Tail { pattern, ty } => tail::run(&pattern, ty.as_deref(), args),
    }
}

fn publish(
    topic: &str,
    ty: String,
    source: String,
    data: &str,
    args: &ApiArgs,
) -> Result<(), Failure> {
    let data: Value = serde_json::from_str(data)
        .map_err(|e| Failure::Usage(format!("--data {data:?} is not JSON: {e}")))?;
    let event = flotilla_core::CloudEvent::new(source, ty).with_json(data);
    event
        .validate()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    run_with(args, async |api| {
        let path = format!("/api/v1/bus/topics/{}/events", seg(topic));
        let res = api
            .post(&path, event.to_json_value(), "application/cloudevents+json")
            .await?;
        print(&res, None, args.json);
        Ok(())
    })
}

pub(crate) fn dlq(cmd: DlqCommand, args: &ApiArgs) -> Result<(), Failure> {
    match cmd {
        DlqCommand::Ls { group } => {
            let path = match group {
                Some(g) => format!("/api/v1/bus/dlq?group={}", seg(&g)),
                None => "/api/v1/bus/dlq".to_owned(),
            };
            show(path, Some("dead_letters"), args)
        }
        DlqCommand::Show { id } => show(format!("/api/v1/bus/dlq/{}", seg(&id)), None, args),
        DlqCommand::Replay { id: Some(id), .. } => dlq::replay_one(&id, args),
        DlqCommand::Replay {
            group: Some(group), ..
        } => dlq::replay_all(&group, args),
        DlqCommand::Replay { .. } => Err(Failure::Usage(
            "dlq replay needs an entry id, or --all with --group".into(),
        )),
        DlqCommand::Purge { group, ids, yes } => dlq::purge(&group, ids, yes, args),
    }
}

fn show(path: String, key: Option<&str>, args: &ApiArgs) -> Result<(), Failure> {
    run_with(args, async |api| {
        print(&api.get(&path).await?, key, args.json);
        Ok(())
    })
}

pub(crate) fn groups(cmd: GroupsCommand, args: &ApiArgs) -> Result<(), Failure> {
    match cmd {
        GroupsCommand::Ls => run_with(args, async |api| {
            let listed = api.get("/api/v1/bus/groups").await?;
            print(&flat_groups(&listed), Some("groups"), args.json);
            Ok(())
        }),
        GroupsCommand::Rm { names } => run_with(args, async |api| {
            require_groups(&api, &names).await?;
            for name in &names {
                let path = format!("/api/v1/bus/groups/{}", seg(name));
                api.call(http::Method::DELETE, &path, None).await?;
                if !args.json {
                    out::line(format_args!("deleted group {name}"));
                }
            }
            if args.json {
                out::json(&json!({ "deleted": names }));
            }
            Ok(())
        }),
    }
}

/// Fails naming every one of `names` that is not a group, before anything is changed: the
/// bus API answers a delete of an unknown group as done, which would hide a typo.
async fn require_groups(api: &crate::admin::Api, names: &[String]) -> anyhow::Result<()> {
    let listed = api.get("/api/v1/bus/groups").await?;
    let known: Vec<&str> = listed["groups"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|g| g["spec"]["name"].as_str())
        .collect();
    let unknown: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !known.contains(n))
        .collect();
    match unknown.as_slice() {
        [] => Ok(()),
        [one] => anyhow::bail!("no group named {one:?} (list them with: flotilla groups ls)"),
        many => anyhow::bail!("no groups named {many:?} (list them with: flotilla groups ls)"),
    }
}

/// One row per group: name, pattern, lag and dead letters side by side.
fn flat_groups(listed: &Value) -> Value {
    let rows: Vec<Value> = listed["groups"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|g| {
            json!({
                "name": g["spec"]["name"],
                "pattern": g["spec"]["pattern"],
                "pending": g["pending"],
                "dead_letters": g["dead_letters"],
            })
        })
        .collect();
    json!({ "groups": rows })
}
