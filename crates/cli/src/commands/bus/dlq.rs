//! `dlq replay` and `dlq purge`: the two commands that change the dead-letter queue.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::{run_with, seg};
use crate::Failure;
use crate::admin::Api;
use crate::cli::ApiArgs;
use crate::out;

/// A long replay gives up after this many failures in a row (the control plane is likely
/// down; going on would only repeat the same error for every entry).
const MAX_FAILURES_IN_A_ROW: usize = 10;

/// Entries listed per page while collecting what `--all` replays.
const PAGE: usize = 1000;

pub(super) fn replay_one(id: &str, args: &ApiArgs) -> Result<(), Failure> {
    run_with(args, async |api| {
        api.post(&replay_path(id), json!({}), "application/json")
            .await?;
        match args.json {
            // The shape `--all` reports, so scripts read one kind of answer.
            true => out::json(
                &Report {
                    replayed: 1,
                    ..Report::default()
                }
                .to_json(),
            ),
            false => out::line(format_args!(
                "replayed dead letter {id}: it is delivered to its group again"
            )),
        }
        Ok(())
    })
}

fn replay_path(id: &str) -> String {
    format!("/api/v1/bus/dlq/{}/replay", seg(id))
}

/// Every entry id of `group`, oldest first, listed before any is replayed (a replayed entry
/// leaves the list, so paging while replaying would skip entries).
async fn entry_ids(api: &Api, group: &str) -> anyhow::Result<Vec<String>> {
    let mut ids: Vec<String> = Vec::new();
    loop {
        let mut path = format!("/api/v1/bus/dlq?group={}&limit={PAGE}", seg(group));
        if let Some(last) = ids.last() {
            path.push_str(&format!("&after={}", seg(last)));
        }
        let page = api.get(&path).await?;
        let entries = page["dead_letters"].as_array().cloned().unwrap_or_default();
        let n = entries.len();
        ids.extend(
            entries
                .iter()
                .filter_map(|e| e["id"].as_str().map(str::to_owned)),
        );
        if n < PAGE {
            return Ok(ids);
        }
    }
}

fn progress(len: usize, json: bool) -> ProgressBar {
    let bar = ProgressBar::new(u64::try_from(len).unwrap_or(u64::MAX));
    if json || !std::io::stdout().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} replayed ({per_sec}, eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}

/// What a long replay did.
#[derive(Debug, Default)]
struct Report {
    replayed: usize,
    failed: Vec<(String, String)>,
    not_attempted: usize,
}

impl Report {
    fn to_json(&self) -> Value {
        let failed: Vec<Value> = self
            .failed
            .iter()
            .map(|(id, error)| json!({ "id": id, "error": error }))
            .collect();
        json!({ "replayed": self.replayed, "failed": failed, "not_attempted": self.not_attempted })
    }

    fn summary(&self, group: &str) -> String {
        let mut s = format!(
            "replayed {} dead letters of group {group}, failed {}",
            self.replayed,
            self.failed.len()
        );
        for (id, error) in &self.failed {
            s.push_str(&format!("\n  {id}: {error}"));
        }
        if self.not_attempted > 0 {
            s.push_str(&format!(
                "\nstopped after {MAX_FAILURES_IN_A_ROW} failures in a row; {} entries not attempted",
                self.not_attempted
            ));
        }
        s
    }
}

async fn replay_each(api: &Api, ids: &[String], bar: &ProgressBar) -> Report {
    let mut report = Report::default();
    let mut in_a_row = 0;
    for (i, id) in ids.iter().enumerate() {
        match api
            .post(&replay_path(id), json!({}), "application/json")
            .await
        {
            Ok(_) => {
                report.replayed += 1;
                in_a_row = 0;
            }
            Err(e) => {
                report.failed.push((id.clone(), format!("{e:#}")));
                in_a_row += 1;
            }
        }
        bar.inc(1);
        if in_a_row == MAX_FAILURES_IN_A_ROW {
            report.not_attempted = ids.len() - i - 1;
            break;
        }
    }
    report
}

pub(super) fn replay_all(group: &str, args: &ApiArgs) -> Result<(), Failure> {
    run_with(args, async |api| {
        let ids = entry_ids(&api, group).await?;
        let bar = progress(ids.len(), args.json);
        let report = replay_each(&api, &ids, &bar).await;
        bar.finish_and_clear();
        if args.json {
            out::json(&report.to_json());
        }
        if report.failed.is_empty() {
            if !args.json {
                out::line(report.summary(group));
            }
            return Ok(());
        }
        bail!(report.summary(group))
    })
}

pub(super) fn purge(
    group: &str,
    ids: Vec<String>,
    yes: bool,
    args: &ApiArgs,
) -> Result<(), Failure> {
    if !yes && !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(format!(
            "dlq purge deletes dead letters of group {group} for good; pass --yes to confirm \
             (stdin is not a terminal to ask on)"
        )));
    }
    run_with(args, async |api| {
        // An unknown group is an error, found before anyone is asked to confirm.
        super::require_groups(&api, &[group.to_owned()]).await?;
        if !yes && !confirm_purge(group, &ids)? {
            eprintln!("purge cancelled; nothing was deleted");
            return Ok(());
        }
        let path = format!("/api/v1/bus/groups/{}/dlq/purge", seg(group));
        let res = api
            .post(&path, json!({ "ids": ids }), "application/json")
            .await?;
        if args.json {
            out::json(&res);
        } else {
            let n = res["purged"].as_u64().unwrap_or(0);
            out::line(format_args!("purged {n} dead letters of group {group}"));
        }
        Ok(())
    })
}

/// Asks on the terminal whether to delete.
fn confirm_purge(group: &str, ids: &[String]) -> anyhow::Result<bool> {
    let what = if ids.is_empty() {
        "every dead letter".to_owned()
    } else {
        format!("{} dead letters", ids.len())
    };
    eprint!("Delete {what} of group {group} for good? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_replay_reports_counts_and_each_failed_id() {
        let report = Report {
            replayed: 3,
            failed: vec![
                (
                    "dl-7".into(),
                    "Not Found: dead letter \"dl-7\" not found (HTTP 404)".into(),
                ),
                ("dl-9".into(), "cannot reach the control plane".into()),
            ],
            not_attempted: 4,
        };
        let text = report.summary("billing");
        assert!(
            text.starts_with("replayed 3 dead letters of group billing, failed 2"),
            "{text}"
        );
        assert!(text.contains("\n  dl-7: Not Found") && text.contains("\n  dl-9: cannot reach"));
        assert!(text.contains("4 entries not attempted"), "{text}");
        assert_eq!(report.to_json()["failed"][1]["id"], "dl-9");
    }
}
