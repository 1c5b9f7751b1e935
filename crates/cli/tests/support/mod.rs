//! Shared by the binary's black-box tests.

use std::process::Command;

/// The `flotilla` binary with every `FLOTILLA_*` variable of the test environment removed, so
/// a developer's settings cannot leak into a test.
pub(crate) fn flotilla() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOTILLA_") {
            cmd.env_remove(k);
        }
    }
    cmd
}
