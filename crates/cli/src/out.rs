//! Writing results to stdout.
//!
//! `println!` panics when stdout's reader has gone away (`flotilla services ls | head -1`).
//! A reader that stops early is not a failure: like ripgrep, the binary then stops quietly
//! with exit 0. Commands that must clean up first (the tails delete their group) use
//! [`try_line`] and stop on [`is_closed`].

use std::io::{ErrorKind, Write as _};

/// Writes `text` and a newline to stdout; exits quietly (0) if stdout's reader is gone.
pub(crate) fn line(text: impl std::fmt::Display) {
    if let Err(e) = try_line(text) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("flotilla: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes `text` and a newline to stdout, flushed, so a follower sees each line at once.
pub(crate) fn try_line(text: impl std::fmt::Display) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()
}

/// Whether `e` is stdout's reader going away (not a failure of the command).
pub(crate) fn is_closed(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
}

/// Prints `value` as one pretty-printed JSON document: what `--json` prints for every
/// command that is not a follower (followers print one compact JSON object per line).
pub(crate) fn json(value: &serde_json::Value) {
    line(serde_json::to_string_pretty(value).unwrap_or_default());
}
