//! Child processes kept running by `up --demo`: one that dies is started again after a
//! backoff (logged); stopping sends SIGTERM, waits out a grace period, then kills.
//!
//! Each child runs in a process group of its own, so a Ctrl-C in the terminal reaches only
//! `up`, which then stops the children in order, while the control plane still answers their
//! deregistration.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The first wait before a restart; doubled after each quick death up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran this long before dying starts again with the first backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// How to start one child.
#[derive(Debug, Clone)]
pub(crate) struct Child {
    pub(crate) name: &'static str,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    /// Its stdout and stderr are appended to this file.
    pub(crate) log: PathBuf,
    /// How long it may take to stop after SIGTERM before it is killed.
    pub(crate) grace: Duration,
}

/// Keeps its children running until [`Supervisor::stop`].
#[derive(Debug, Clone)]
pub(crate) struct Supervisor {
    children: Arc<[Child]>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Supervisor {
    pub(crate) fn new(children: Vec<Child>) -> Self {
        Self {
            children: children.into(),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// Starts every child, each watched by a task of its own.
    pub(crate) fn start(&self) {
        for child in self.children.iter() {
            self.tracker
                .spawn(supervise(child.clone(), self.stop.clone()));
        }
    }

    /// Stops every child (SIGTERM, then SIGKILL after its grace period) and returns once all
    /// have exited.
    pub(crate) async fn stop(&self) {
        tracing::info!("stopping the demo services");
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

async fn supervise(child: Child, stop: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        match spawn(&child) {
            Ok(mut process) => {
                tracing::info!(
                    service = child.name,
                    pid = process.id(),
                    "demo service started"
                );
                tokio::select! {
                    status = process.wait() => {
                        let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                        if stop.is_cancelled() {
                            return;
                        }
                        if started.elapsed() > STABLE_AFTER {
                            backoff = FIRST_BACKOFF;
                        }
                        tracing::warn!(service = child.name, %status, restart_in = ?backoff,
                            log = %child.log.display(), "demo service exited; restarting it");
                    }
                    () = stop.cancelled() => return terminate(&child, process).await,
                }
            }
            Err(e) => {
                tracing::error!(service = child.name, error = %e, restart_in = ?backoff,
                    "cannot start demo service; trying again");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn spawn(child: &Child) -> std::io::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&child.log)?;
    let mut cmd = tokio::process::Command::new(&child.program);
    cmd.args(&child.args)
        .envs(child.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.spawn()
}

async fn terminate(child: &Child, mut process: tokio::process::Child) {
    signal_terminate(&process);
    match tokio::time::timeout(child.grace, process.wait()).await {
        Ok(status) => {
            let status = status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            tracing::info!(service = child.name, %status, "demo service stopped");
        }
        Err(_) => {
            tracing::warn!(service = child.name, grace = ?child.grace,
                "demo service did not stop after SIGTERM; killing it");
            let _ = process.kill().await;
        }
    }
}

#[cfg(unix)]
fn signal_terminate(process: &tokio::process::Child) {
    use rustix::process::{Pid, Signal, kill_process};
    let pid = process
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    if let Some(pid) = pid
        && let Err(e) = kill_process(pid, Signal::TERM)
    {
        tracing::warn!(error = %e, "cannot send SIGTERM to a demo service");
    }
}

#[cfg(not(unix))]
fn signal_terminate(_: &tokio::process::Child) {}

/// Makes this process receive SIGTERM when the process that started it dies (Linux), so a
/// `kill -9` of `up --demo` does not leave its services running.
pub(crate) fn die_with_parent() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::process::{Signal, set_parent_process_death_signal};
        if let Err(e) = set_parent_process_death_signal(Some(Signal::TERM)) {
            eprintln!("flotilla: cannot ask to be stopped with the parent process: {e}");
        }
    }
}
