//! Groups, topics and the dead-letter queue: one call each, no batching, no retries (the
//! caller decides, as with any backend).

use flotilla_bus::{DeadLetter, DlqQuery, Error, GroupInfo, GroupName, GroupSpec, TopicInfo};
use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::error::from_call;
use super::wire::DeadLetterWire;
use crate::ControlPlane;
use crate::http::{Answer, Call, segment};

fn group_path(group: &GroupName) -> String {
    format!("/api/v1/bus/groups/{}", segment(group.as_str()))
}

fn decode<T: serde::de::DeserializeOwned>(answer: &Answer) -> Result<T, Error> {
    answer.decode().map_err(|e| Error::Backend(e.to_string()))
}

pub(super) async fn declare_group(cp: &ControlPlane, spec: &GroupSpec) -> Result<(), Error> {
    let path = group_path(&spec.name);
    let call = Call::new(Method::PUT, &path).json(&json!({ "pattern": spec.pattern }));
    cp.call(call)
        .await
        .map_err(|e| from_call(e, ("group", spec.name.as_str())))?;
    Ok(())
}

pub(super) async fn delete_group(cp: &ControlPlane, group: &GroupName) -> Result<(), Error> {
    let path = group_path(group);
    match cp.call(Call::new(Method::DELETE, &path)).await {
        // Deleting is idempotent: a group already gone is the answer asked for.
        Err(e) if e.status() == Some(404) => Ok(()),
        other => other
            .map(drop)
            .map_err(|e| from_call(e, ("group", group.as_str()))),
    }
}

pub(super) async fn topics(cp: &ControlPlane) -> Result<Vec<TopicInfo>, Error> {
    #[derive(Deserialize)]
    struct Topics {
        topics: Vec<TopicInfo>,
    }
    let answer = cp
        .call(Call::get("/api/v1/bus/topics"))
        .await
        .map_err(|e| from_call(e, ("topics", "")))?;
    Ok(decode::<Topics>(&answer)?.topics)
}

pub(super) async fn groups(cp: &ControlPlane) -> Result<Vec<GroupInfo>, Error> {
    #[derive(Deserialize)]
    struct Groups {
        groups: Vec<GroupInfo>,
    }
    let answer = cp
        .call(Call::get("/api/v1/bus/groups"))
        .await
        .map_err(|e| from_call(e, ("groups", "")))?;
    Ok(decode::<Groups>(&answer)?.groups)
}

fn dlq_query(query: &DlqQuery) -> String {
    let mut params = vec![format!(
        "limit={}",
        if query.limit == 0 { 100 } else { query.limit }
    )];
    if let Some(g) = &query.group {
        params.push(format!("group={}", segment(g.as_str())));
    }
    if let Some(after) = &query.after {
        params.push(format!("after={}", segment(after)));
    }
    format!("/api/v1/bus/dlq?{}", params.join("&"))
}

pub(super) async fn dlq_list(
    cp: &ControlPlane,
    query: &DlqQuery,
) -> Result<Vec<DeadLetter>, Error> {
    #[derive(Deserialize)]
    struct List {
        dead_letters: Vec<DeadLetterWire>,
    }
    let path = dlq_query(query);
    let group = query.group.as_ref().map_or("", GroupName::as_str);
    let answer = cp
        .call(Call::get(&path))
        .await
        .map_err(|e| from_call(e, ("group", group)))?;
    let list = decode::<List>(&answer)?.dead_letters;
    Ok(list.into_iter().map(DeadLetter::from).collect())
}

pub(super) async fn dlq_get(cp: &ControlPlane, id: &str) -> Result<DeadLetter, Error> {
    let path = format!("/api/v1/bus/dlq/{}", segment(id));
    let answer = cp
        .call(Call::get(&path))
        .await
        .map_err(|e| from_call(e, ("dead letter", id)))?;
    Ok(decode::<DeadLetterWire>(&answer)?.into())
}

pub(super) async fn dlq_replay(cp: &ControlPlane, id: &str) -> Result<(), Error> {
    let path = format!("/api/v1/bus/dlq/{}/replay", segment(id));
    cp.call(Call::new(Method::POST, &path))
        .await
        .map_err(|e| from_call(e, ("dead letter", id)))?;
    Ok(())
}

pub(super) async fn dlq_purge(
    cp: &ControlPlane,
    group: &GroupName,
    ids: &[String],
) -> Result<u64, Error> {
    #[derive(Deserialize)]
    struct Purged {
        purged: u64,
    }
    let path = format!("{}/dlq/purge", group_path(group));
    let call = Call::new(Method::POST, &path).json(&json!({ "ids": ids }));
    let answer = cp
        .call(call)
        .await
        .map_err(|e| from_call(e, ("group", group.as_str())))?;
    Ok(decode::<Purged>(&answer)?.purged)
}
