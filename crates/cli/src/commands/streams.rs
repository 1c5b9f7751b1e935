//! Event-store commands: `streams ls|read|tail` and `projections ls|rebuild`.

use anyhow::{Context as _, bail};

use super::admin::{run_with, seg};
use crate::Failure;
use crate::admin::{Api, print};
use crate::cli::{ApiArgs, ProjectionsCommand, StreamsCommand};

pub(crate) fn streams(cmd: StreamsCommand, args: &ApiArgs) -> Result<(), Failure> {
    let (path, key) = match cmd {
        StreamsCommand::Tail { stream, from } => {
            return run_with(args, async |api| tail(&api, stream, from).await);
        }
        StreamsCommand::Ls => ("/api/v1/streams".to_owned(), "streams"),
        StreamsCommand::Read { stream } => (format!("/api/v1/streams/{}", seg(&stream)), "events"),
    };
    run_with(args, async |api| {
        let res = api.get(&path).await.context("reading the event store")?;
        print(&res, Some(key), args.json);
        Ok(())
    })
}

pub(crate) fn projections(cmd: ProjectionsCommand, args: &ApiArgs) -> Result<(), Failure> {
    match cmd {
        ProjectionsCommand::Ls => run_with(args, async |api| {
            print(
                &api.get("/api/v1/streams/$subscriptions").await?,
                Some("subscriptions"),
                args.json,
            );
            Ok(())
        }),
        ProjectionsCommand::Rebuild {
            name,
            service,
            service_token,
        } => run_with(args, async |api| {
            let target = super::rebuild::Target {
                projection: name,
                service,
                token: service_token,
            };
            super::rebuild::run(&api, target, args.json).await
        }),
    }
}

/// Follows `$all` from the end (or `--from`), printing events of `stream` (or all) as JSON
/// lines on stdout, until Ctrl-C or SIGTERM (exit 0) or until the control plane ends the
/// stream (exit 1: a follower that stops silently would look like a quiet store).
///
/// The starting position is fixed before following, and reported on stderr: every event
/// appended after that line is printed; one appended before it is history, not shown.
async fn tail(api: &Api, stream: Option<String>, from: Option<u64>) -> anyhow::Result<()> {
    let start = match from {
        Some(p) => p,
        None => api.get("/api/v1/streams/$subscriptions").await?["head"]
            .as_u64()
            .context("the control plane reported no head position")?,
    };
    let stop = crate::signals::stop_signal();
    eprintln!("following $all after position {start} (Ctrl-C to stop)");
    let path = format!("/api/v1/streams/$all/subscribe?after={start}");
    let reader_gone = std::cell::Cell::new(false);
    let follow = api.follow(&path, |data| {
        let event: serde_json::Value =
            serde_json::from_str(data).unwrap_or(serde_json::Value::Null);
        let shown = stream
            .as_deref()
            .is_none_or(|s| event["stream"].as_str() == Some(s));
        // A reader that stopped (`| head`) ends the tail quietly.
        reader_gone.set(shown && crate::out::try_line(data).is_err());
        !reader_gone.get()
    });
    tokio::select! {
        r = follow => {
            r?;
            if reader_gone.get() {
                return Ok(());
            }
            bail!("the control plane ended the event stream (is it shutting down?)")
        }
        () = stop => Ok(()),
    }
}
