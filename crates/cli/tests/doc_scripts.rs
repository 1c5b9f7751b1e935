//! The documents' commands, run as written: README.md's curl walkthrough (the block fenced
//! ```` ```sh walkthrough ````) against a real `flotilla up --demo`, its output compared with the
//! ```` ```text ```` block after it; and every ```` ```sh ```` block of docs/getting-started.md,
//! in order, as one script. Only the documented ports are moved to free ones, so parallel
//! tests do not collide; the commands themselves are the documents' text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod demo_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use demo_support::Demo;
use support::free_port;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(doc: &str) -> String {
    std::fs::read_to_string(repository().join(doc)).unwrap()
}

/// The bodies of the fenced blocks whose info string satisfies `wanted`, in order, each with
/// the info string of the block that follows it.
fn blocks(markdown: &str, wanted: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in markdown.lines() {
        let Some(info) = line.strip_prefix("```") else {
            if let Some((_, body)) = &mut open {
                body.push_str(line);
                body.push('\n');
            }
            continue;
        };
        match open.take() {
            Some((info, body)) => found.push((info, body)),
            None => open = Some((info.trim().to_owned(), String::new())),
        }
    }
    let mut out = Vec::new();
    for (i, (info, body)) in found.iter().enumerate() {
        if wanted(info) {
            let next = found.get(i + 1).map(|(_, b)| b.clone()).unwrap_or_default();
            out.push((body.clone(), next));
        }
    }
    out
}

/// Runs `script` with bash (`-euo pipefail`), `flotilla` first on the PATH, the given
/// environment and working directory; background jobs it leaves are stopped at its end.
fn bash(script: &str, dir: &Path, env: &[(&str, String)]) -> Output {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_flotilla"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}");
    let mut cmd = Command::new("timeout");
    cmd.args(["900", "bash", "-euo", "pipefail", "-c", &script])
        .current_dir(dir)
        .env("PATH", path);
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOTILLA_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v))).output().unwrap()
}

fn replace_ports(script: &str, ports: &[(&str, u16)]) -> String {
    ports.iter().fold(script.to_owned(), |s, (from, port)| {
        s.replace(from, &format!("127.0.0.1:{port}"))
    })
}

#[test]
fn the_readme_walkthrough_prints_what_the_readme_says() {
    let readme = read("README.md");
    let walkthrough = blocks(&readme, |info| info == "sh walkthrough");
    let [(script, expected)] = walkthrough.as_slice() else {
        panic!("README.md has one ```sh walkthrough block");
    };
    let data = tempfile::tempdir().unwrap();
    let demo = Demo::start(data.path(), &[]);
    let script = replace_ports(
        script,
        &[
            ("localhost:8080", demo.gateway),
            ("localhost:8103", demo.ports[2]),
        ],
    );
    let out = bash(&script, data.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr),
        demo_support::logs(data.path())
    );
    assert_eq!(stdout, *expected);
    assert_eq!(demo.interrupt().code(), Some(0));
}

#[test]
fn every_command_of_getting_started_runs() {
    let guide = read("docs/getting-started.md");
    let script: String = blocks(&guide, |info| info == "sh")
        .into_iter()
        .map(|(body, _)| body)
        .collect();
    assert!(script.contains("flotilla up --demo"), "{script}");
    let (api, gateway, service) = (free_port(), free_port(), free_port());
    let script = replace_ports(
        &script,
        &[
            ("localhost:8080", gateway),
            ("localhost:4400", api),
            ("127.0.0.1:4400", api),
            ("127.0.0.1:9100", service),
        ],
    );
    let demo_ports: Vec<String> = (0..4).map(|_| free_port().to_string()).collect();
    let env = [
        ("FLOTILLA_SERVER__LISTEN", format!("127.0.0.1:{api}")),
        ("FLOTILLA_GATEWAY__LISTEN", format!("127.0.0.1:{gateway}")),
        ("FLOTILLA_DEMO_PORTS", demo_ports.join(",")),
        ("FLOTILLA_URL", format!("http://127.0.0.1:{api}")),
        ("FLOTILLA_SERVER__DRAIN_DELAY", "0s".to_owned()),
    ];
    let out = bash(&script, &repository(), &env);
    assert!(
        out.status.success(),
        "the guide's commands failed:\n--- stdout ---\n{}\n--- stderr (last 60 lines) ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        tail(&String::from_utf8_lossy(&out.stderr), 60)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for shown in [
        "Flotilla is up",
        "espresso-machine",
        "\"balance\":5",
        "completed",
    ] {
        assert!(stdout.contains(shown), "{shown:?} missing from:\n{stdout}");
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn blocks_are_found_by_info_string_with_the_next_block() {
    let md = "a\n```sh walkthrough\necho hi\n```\nprints\n```text\nhi\n```\n```sh\nls\n```\n";
    let walkthrough = blocks(md, |i| i == "sh walkthrough");
    assert_eq!(walkthrough, [("echo hi\n".to_owned(), "hi\n".to_owned())]);
    assert_eq!(blocks(md, |i| i == "sh")[0].0, "ls\n");
}
