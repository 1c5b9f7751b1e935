//! The gateway's RFC 9111 cache under the http-tests cache suite (npm `http-cache-tests`), run
//! by scripts/cache-tests.sh against `flotilla up` with one cached route in front of the suite's
//! own origin server. Fails when fewer than [`REQUIRED_PASSES`] of the suite's required tests
//! pass; skips visibly when node or the package is missing (scripts/test-tools.sh install).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use flotilla_testkit::{tool, tool_at};

const SUITE: &str = "gateway cache (http-tests cache suite)";

/// The best published shared caches pass about 130 of the suite's required tests; the gateway
/// is held above them.
const REQUIRED_PASSES: usize = 140;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cache-tests.sh")
}

/// The package's `package.json`, where the script installs it.
fn package_json() -> PathBuf {
    let out = Command::new("bash")
        .arg(script())
        .arg("dir")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("package.json")
}

/// `P` from the script's `required tests: P pass, ...` line.
fn required_passes(summary: &str) -> Option<usize> {
    let line = summary
        .lines()
        .find(|l| l.starts_with("required tests: "))?;
    line["required tests: ".len()..]
        .split(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn the_cache_passes_at_least_140_required_tests_of_the_http_tests_suite() {
    if tool("node", SUITE).is_none() {
        return;
    }
    if tool_at("http-cache-tests", &package_json(), SUITE).is_none() {
        return;
    }
    // Kept where CI keeps build output, so a failing run's per-test results can be read.
    let results = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache-tests-results.json");
    let mut cmd = Command::new("bash");
    cmd.arg(script())
        .arg("run")
        .arg(&results)
        .arg(env!("CARGO_BIN_EXE_flotilla"));
    // A developer's settings must not reach the platform under test; the package's directory
    // (FLOTILLA_CACHE_TESTS_DIR) is the script's and is kept.
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOTILLA_") && k != "FLOTILLA_CACHE_TESTS_DIR" {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{summary}results: {}", results.display());
    let passes = required_passes(&summary).unwrap_or_else(|| panic!("no summary in {summary}"));
    assert!(
        passes >= REQUIRED_PASSES,
        "{passes} required tests pass, fewer than {REQUIRED_PASSES}:\n{summary}"
    );
}

#[test]
fn the_summary_line_is_read_by_its_pass_count() {
    let summary = "required tests: 149 pass, 3 fail, 5 dependency failed, 3 not run\n  FAIL x\n";
    assert_eq!(required_passes(summary), Some(149));
    assert_eq!(required_passes("surrogate-control tests: 1 pass"), None);
}
