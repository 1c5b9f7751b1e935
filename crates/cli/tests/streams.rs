//! `flotilla streams tail` against a running platform, end to end: the CLI as a child process,
//! its output read line by line. Each test is bounded by a watchdog that kills the processes
//! and fails the test with a message instead of hanging.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Up, flotilla, http, start_role, stop};

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Generous: a loaded CI machine needs seconds, never minutes.
const LIMIT: Duration = Duration::from_secs(120);

/// Kills the given processes if the test is still running after `LIMIT`.
struct Watchdog {
    done: mpsc::Sender<()>,
}

impl Watchdog {
    fn new(pids: Vec<u32>) -> Self {
        let (done, finished) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if finished.recv_timeout(LIMIT) == Err(mpsc::RecvTimeoutError::Timeout) {
                eprintln!("test still running after {LIMIT:?}: killing its processes");
                for pid in pids {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
            }
        });
        Self { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.done.send(());
    }
}

/// Lines of a child's pipe, read on a thread; `next` fails the test after `LIMIT`.
struct Lines(mpsc::Receiver<String>);

impl Lines {
    fn of(pipe: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self(rx)
    }

    fn next(&self, waiting_for: &str) -> String {
        match self.0.recv_timeout(LIMIT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("no line within {LIMIT:?} while waiting for {waiting_for}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the pipe closed while waiting for {waiting_for}")
            }
        }
    }

    /// Skips lines until one contains `needle`.
    fn until(&self, needle: &str) -> String {
        let mut skipped = Vec::new();
        loop {
            let line = self.next(&format!("{needle:?} after {skipped:?}"));
            if line.contains(needle) {
                return line;
            }
            skipped.push(line);
        }
    }
}

fn platform(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> Up {
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    start_role("up", &dir.path().join("data"), &routes, env)
}

fn tail(up: &Up, args: &[&str]) -> (Child, Lines, Lines) {
    let mut child = flotilla()
        .args(["streams", "tail"])
        .args(args)
        .args(["--url", &format!("http://127.0.0.1:{}", up.api)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::of(child.stdout.take().unwrap());
    let err = Lines::of(child.stderr.take().unwrap());
    (child, out, err)
}

fn append(up: &Up, stream: &str, n: u32) {
    let body = format!(r#"{{"events":[{{"type":"OrderPlaced","data":{{"n":{n}}}}}]}}"#);
    let (status, text) = http(up.api, "POST", &format!("/api/v1/streams/{stream}"), &body);
    assert_eq!(status, 201, "{text}");
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn tail_prints_events_appended_after_it_started_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir, &[]);
    append(&up, "order-1", 0);
    let (mut child, out, err) = tail(&up, &["order-1"]);
    let _watchdog = Watchdog::new(vec![up.child.id(), child.id()]);
    // Events appended before this line are history; after it, every one is shown.
    let ready = err.until("following $all after position");
    assert!(ready.contains("position 1"), "{ready}");

    append(&up, "order-2", 1);
    append(&up, "order-1", 2);
    append(&up, "order-1", 3);
    let first: serde_json::Value = serde_json::from_str(&out.next("the first event")).unwrap();
    let second: serde_json::Value = serde_json::from_str(&out.next("the second event")).unwrap();
    assert_eq!(
        (first["stream"].as_str(), first["data"]["n"].as_u64()),
        (Some("order-1"), Some(2))
    );
    assert_eq!(
        (second["stream"].as_str(), second["position"].as_u64()),
        (Some("order-1"), Some(4))
    );

    signal(&child, "-INT");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    stop(up);
}

#[test]
fn a_platform_shutdown_ends_open_tails_without_waiting_for_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    // Were the open stream held until the deadline, the watchdog would fire first.
    let up = platform(&dir, &[("FLOTILLA_SERVER__SHUTDOWN_DEADLINE", "10m")]);
    let (mut child, out, err) = tail(&up, &[]);
    let _watchdog = Watchdog::new(vec![up.child.id(), child.id()]);
    err.until("following $all after position 0");
    append(&up, "order-1", 1);
    assert!(out.next("the event").contains("\"order-1\""));

    stop(up);
    let message = err.until("event stream");
    assert!(message.contains("ended the event stream"), "{message}");
    assert_eq!(
        child.wait().unwrap().code(),
        Some(1),
        "a tail cut short is not a success"
    );
}
