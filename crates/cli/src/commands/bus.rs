//! Event-bus admin commands: topics, events (publish, tail), groups and the dead-letter queue.

mod dlq;
mod tail;

use serde_json::{Value, json};

use super::admin::{run_with, seg};
use crate::Failure;
use crate::admin::print;
use crate::cli::{ApiArgs, DlqCommand, EventsCommand, GroupsCommand, TopicsCommand};

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
            for name in &names {
                let path = format!("/api/v1/bus/groups/{}", seg(name));
                api.call(http::Method::DELETE, &path, None).await?;
                if !args.json {
                    println!("deleted group {name}");
                }
            }
            if args.json {
                println!("{}", json!({ "deleted": names }));
            }
            Ok(())
        }),
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
