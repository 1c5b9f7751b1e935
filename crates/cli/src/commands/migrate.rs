//! `flotilla migrate`: copies what a stopped `flotilla up` data directory holds (event store,
//! bus groups with their undelivered events and dead letters, registry catalog) into the
//! engines a target configuration names, then verifies the copy part by part.
//!
//! Resumable: progress is kept in a file next to the source database and every step is safe
//! to redo, so a run that was killed continues where it stopped and duplicates nothing.
//! docs/deployment.md ("Migrating from one machine") says what is kept exactly and what not.

mod bus;
mod catalog;
mod engines;
mod events;
mod plan;
mod progress;
mod verify;

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::MigrateArgs;
use crate::platform::PlatformConfig;
use crate::{Failure, out, settings, table};
use engines::{Source, Target};
use plan::Plan;
use progress::Progress;

pub(crate) fn run(args: &MigrateArgs) -> Result<(), Failure> {
    let db = args.data_dir.join("flotilla.db");
    if !db.exists() {
        return Err(Failure::Usage(format!(
            "no database at {} (is --data-dir the stopped platform's storage.data_dir?)",
            db.display()
        )));
    }
    let target: PlatformConfig = settings::load(Some(&args.to))?;
    engines::check_target(&target, &args.data_dir)?;
    engines::refuse_in_use(&db)?;
    super::runtime()?.block_on(migrate(args, &target))
}

async fn migrate(args: &MigrateArgs, config: &PlatformConfig) -> Result<(), Failure> {
    let source = Source::open(&args.data_dir).await?;
    let plan = Plan::read(&source).await?;
    let in_place = config.registry.catalog.kind == flotilla_registry::CatalogKind::Sqlite
        && engines::same_dir(&config.storage.data_dir, &args.data_dir);
    if args.dry_run {
        out::line(format_args!(
            "would copy from {}:\n{}",
            args.data_dir.display(),
            plan.describe(in_place)
        ));
        return Ok(());
    }
    refuse_truncated(&plan)?;
    let target = Target::open(config, &source, &args.data_dir).await?;
    let mut progress = Progress::load(&args.data_dir, &engines::fingerprint(config))?;
    if progress.complete() {
        out::line("an earlier run copied everything to this target; verifying again");
    } else if progress.resumed() {
        out::line("continuing the migration an earlier run started");
    }
    copy(&source, &target, &plan, &mut progress, args.json).await?;
    let rows = verify::run(&source, &target, &plan, &progress).await?;
    report(&rows, args.json)
}

async fn copy(
    source: &Source,
    target: &Target,
    plan: &Plan,
    progress: &mut Progress,
    json: bool,
) -> anyhow::Result<()> {
    let events_bar = bar(plan.events, "event store", json);
    events::copy(&source.events, &target.events, plan, progress, &events_bar).await?;
    events_bar.finish_and_clear();
    if let (Some(catalog), false) = (&target.catalog, progress.catalog_done) {
        catalog::copy(&plan.catalog, &**catalog).await?;
        progress.catalog_done = true;
        progress.save()?;
    }
    if progress.bus.done {
        // Idempotent, and needed for the verification: the RabbitMQ backend lists only the
        // groups its own process declared.
        for group in &plan.groups {
            target.bus.declare_group(&group.spec).await?;
        }
        return Ok(());
    }
    let bus_bar = bar(plan.pending_events() as u64, "bus", json);
    let outcome = bus::copy(plan, &target.bus, progress, &bus_bar).await?;
    bus_bar.finish_and_clear();
    report_bus(&outcome);
    Ok(())
}

fn report_bus(outcome: &bus::Outcome) {
    if outcome.extra_attempts > 0 {
        out::line(format_args!(
            "note: {} undelivered events count one more delivery attempt on the target \
             (they were leased while copies their group had already consumed were removed)",
            outcome.extra_attempts
        ));
    }
    for (group, left) in &outcome.unsettled {
        out::line(format_args!(
            "warning: group {group} holds {left} events it had already consumed on the source"
        ));
    }
}

/// The event-store contract appends a stream's events at versions 1, 2, 3, ...: a stream whose
/// first events were truncated cannot keep its versions on the target.
fn refuse_truncated(plan: &Plan) -> Result<(), Failure> {
    let Some((stream, version)) = plan.truncated.first() else {
        return Ok(());
    };
    Err(Failure::Usage(format!(
        "stream {stream} (and {} more) was truncated: its first event left is version \
         {version}, and the target cannot store a stream that does not start at version 1 \
         (purge such streams with `flotilla streams` before migrating)",
        plan.truncated.len() - 1
    )))
}

fn report(rows: &[verify::Row], json: bool) -> Result<(), Failure> {
    let table: Vec<serde_json::Value> = rows.iter().map(verify::Row::to_json).collect();
    table::print(&serde_json::Value::Array(table), None, json);
    let bad = rows.iter().filter(|r| !r.ok()).count();
    match bad {
        0 => {
            if !json {
                out::line(format_args!("verified: {} parts match", rows.len()));
            }
            Ok(())
        }
        n => Err(Failure::Runtime(anyhow::anyhow!(
            "verification failed: {n} of {} parts differ between source and target (rows \
             with match NO); the source is untouched, and a re-run continues the copy",
            rows.len()
        ))),
    }
}

/// A bar on stderr, hidden for scripts (stdout not a terminal) and JSON output.
fn bar(len: u64, what: &str, json: bool) -> ProgressBar {
    if json || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let template = format!("{what}: {{msg}} {{bar:40}} {{pos}}/{{len}} ({{eta}})");
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
