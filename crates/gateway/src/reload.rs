//! Reloading the configuration file on SIGHUP or when it changes on disk.
//!
//! The file is polled (modification time and length) rather than watched with inotify: one
//! `stat` per interval is cheap, works on every filesystem (including bind mounts and config
//! maps, where inotify misses atomic renames), and needs no extra dependency.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::Gateway;

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reloads on a blocking thread: reading the file, certificates and keys and compiling the
/// route table would otherwise hold a runtime worker (of two, on a small machine).
async fn reload_off_runtime(gw: &Gateway, path: &Path, why: &'static str) {
    let (gw, path) = (gw.clone(), path.to_owned());
    if let Err(e) = tokio::task::spawn_blocking(move || reload_logged(&gw, &path, why)).await {
        tracing::error!(error = %e, "gateway config reload did not finish");
    }
}

fn reload_logged(gw: &Gateway, path: &Path, why: &str) {
    match gw.reload_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), trigger = why, "gateway config reloaded"),
        Err(e) => tracing::error!(
            path = %path.display(), trigger = why, error = %e,
            "gateway config refused; the previous one keeps serving"
        ),
    }
}

impl Gateway {
    /// Reloads `path` whenever the process receives SIGHUP or the file changes (checked every
    /// `poll`), until `shutdown`. A refused file is logged and the running config kept.
    pub async fn watch_config(&self, path: PathBuf, poll: Duration, shutdown: CancellationToken) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; file polling only");
                None
            }
        };
        let mut last = stamp(&path);
        let mut tick = tokio::time::interval(poll);
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = hangup => reload_off_runtime(self, &path, "SIGHUP").await,
                _ = tick.tick() => {
                    let now = stamp(&path);
                    if now != last {
                        last = now;
                        reload_off_runtime(self, &path, "file change").await;
                    }
                }
                () = shutdown.cancelled() => return,
            }
        }
    }
}
