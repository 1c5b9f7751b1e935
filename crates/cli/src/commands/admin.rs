//! Admin commands: thin calls of the control plane's HTTP API.

use serde_json::json;

use crate::Failure;
use crate::admin::{Api, print};
use crate::cli::{ApiArgs, DlqCommand, EventsCommand, ServicesCommand, TopicsCommand};

pub(super) fn run_with(
    args: &ApiArgs,
    f: impl AsyncFnOnce(Api) -> anyhow::Result<()>,
) -> Result<(), Failure> {
    let api = Api::new(args).map_err(|e| Failure::Usage(e.to_string()))?;
    super::runtime()?.block_on(f(api)).map_err(Failure::Runtime)
}

/// Encodes a path segment supplied by the user.
pub(super) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn services(cmd: ServicesCommand, args: &ApiArgs) -> Result<(), Failure> {
    run_with(args, async |api| {
        let (path, key) = match cmd {
            ServicesCommand::Ls => ("/api/v1/registry/services".to_owned(), "services"),
            ServicesCommand::Show { name } => (
                format!(
                    "/api/v1/registry/services/{}?status=passing,warning,critical,draining",
                    seg(&name)
                ),
                "instances",
            ),
        };
        print(&api.get(&path).await?, Some(key), args.json);
        Ok(())
    })
}

pub(crate) fn topics(cmd: TopicsCommand, args: &ApiArgs) -> Result<(), Failure> {
    let TopicsCommand::Ls = cmd;
    run_with(args, async |api| {
        print(
            &api.get("/api/v1/bus/topics").await?,
            Some("topics"),
            args.json,
        );
        Ok(())
    })
}

pub(crate) fn events(cmd: EventsCommand, args: &ApiArgs) -> Result<(), Failure> {
    let EventsCommand::Publish {
        topic,
        ty,
        source,
        data,
    } = cmd;
    let data: serde_json::Value = serde_json::from_str(&data)
        .map_err(|e| Failure::Usage(format!("--data {data:?} is not JSON: {e}")))?;
    let event = flotilla_core::CloudEvent::new(source, ty).with_json(data);
    event
        .validate()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    run_with(args, async |api| {
        let path = format!("/api/v1/bus/topics/{}/events", seg(&topic));
        let res = api
            .post(&path, event.to_json_value(), "application/cloudevents+json")
            .await?;
        print(&res, None, args.json);
        Ok(())
    })
}

pub(crate) fn dlq(cmd: DlqCommand, args: &ApiArgs) -> Result<(), Failure> {
    run_with(args, async |api| {
        let res = match cmd {
            DlqCommand::Ls => api.get("/api/v1/bus/dlq").await?,
            DlqCommand::Show { id } => api.get(&format!("/api/v1/bus/dlq/{}", seg(&id))).await?,
            DlqCommand::Replay { id } => {
                api.post(
                    &format!("/api/v1/bus/dlq/{}/replay", seg(&id)),
                    json!({}),
                    "application/json",
                )
                .await?
            }
        };
        print(&res, Some("entries"), args.json);
        Ok(())
    })
}
