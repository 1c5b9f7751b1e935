//! `flotilla backup DEST`: a whole, checked copy of the embedded database.

use std::path::Path;

use anyhow::Context as _;
use serde_json::json;

use super::admin::run_with;
use crate::Failure;
use crate::cli::ApiArgs;
use crate::out;

pub(crate) fn run(dest: &Path, data_dir: Option<&Path>, args: &ApiArgs) -> Result<(), Failure> {
    let dest = std::path::absolute(dest)
        .map_err(|e| Failure::Usage(format!("destination {}: {e}", dest.display())))?;
    match data_dir {
        Some(dir) => offline(&dir.join("flotilla.db"), &dest, args.json),
        None => run_with(args, async |api| {
            let res = api
                .post(
                    crate::wiring::backup::PATH,
                    json!({ "path": dest }),
                    "application/json",
                )
                .await
                .context("the control plane did not back up")?;
            report(&res, args.json);
            Ok(())
        }),
    }
}

/// Copies the database of a stopped platform (a running one is backed up consistently too:
/// SQLite's locking keeps the copy to one committed state).
fn offline(source: &Path, dest: &Path, json: bool) -> Result<(), Failure> {
    if !source.exists() {
        return Err(Failure::Usage(format!(
            "no database at {} (is --data-dir the platform's storage.data_dir?)",
            source.display()
        )));
    }
    let copy = async {
        let db = flotilla_sqlite::Database::open(flotilla_sqlite::Options::new(source))?;
        db.backup(dest).await
    };
    super::runtime()?
        .block_on(copy)
        .with_context(|| format!("cannot back up {}", source.display()))?;
    let bytes = std::fs::metadata(dest).map(|m| m.len()).ok();
    report(&json!({ "path": dest, "bytes": bytes }), json);
    Ok(())
}

fn report(res: &serde_json::Value, json: bool) {
    if json {
        return out::json(res);
    }
    let path = res["path"].as_str().unwrap_or_default();
    match res["bytes"].as_u64() {
        Some(n) => out::line(format_args!("backed up to {path} ({n} bytes)")),
        None => out::line(format_args!("backed up to {path}")),
    }
}
