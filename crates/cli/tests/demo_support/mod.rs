//! Runs the real `flotilla up --demo` on free ports in a data directory of its own, and finds
//! its child processes through /proc, for the demo's black-box tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{flotilla, free_port, request};

/// The last line of the banner `up --demo` prints once the shop is seeded and routed.
pub(crate) const READY: &str = "Ctrl-C stops the shop";

/// A running `flotilla up --demo`, killed (with its children) if a test fails.
pub(crate) struct Demo {
    pub(crate) child: Child,
    pub(crate) api: u16,
    pub(crate) gateway: u16,
    /// users, orders, inventory, payments.
    pub(crate) ports: [u16; 4],
    /// What it printed on stdout until the banner's end.
    pub(crate) banner: String,
}

impl Demo {
    /// Starts `up --demo` with `data` as its data directory and `env` added; returns once the
    /// banner is printed (the shop seeded and routed).
    pub(crate) fn start(data: &Path, env: &[(&str, &str)]) -> Demo {
        // A port picked free can be taken by a parallel test before `up` binds it: such a
        // start is retried on fresh ports; any other failed start fails the test.
        for _ in 0..5 {
            if let Some(demo) = Demo::try_start(data, env) {
                return demo;
            }
        }
        panic!("`flotilla up --demo` found no free ports in five tries");
    }

    fn try_start(data: &Path, env: &[(&str, &str)]) -> Option<Demo> {
        let (api, gateway) = (free_port(), free_port());
        let ports = [free_port(), free_port(), free_port(), free_port()];
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        std::fs::create_dir_all(data).unwrap();
        let log = std::fs::File::create(data.join("up.log")).unwrap();
        let mut child = flotilla()
            .args(["up", "--demo", "--demo-ports", &list.join(",")])
            .env("FLOTILLA_SERVER__LISTEN", format!("127.0.0.1:{api}"))
            .env("FLOTILLA_SERVER__DRAIN_DELAY", "0s")
            .env("FLOTILLA_STORAGE__DATA_DIR", data)
            .env("FLOTILLA_GATEWAY__LISTEN", format!("127.0.0.1:{gateway}"))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let banner = read_banner(&mut child, data)?;
        Some(Demo {
            child,
            api,
            gateway,
            ports,
            banner,
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api)
    }

    pub(crate) fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway)
    }

    /// The pids of its `demo-service` children, by service name.
    pub(crate) fn services(&self) -> Vec<(String, u32)> {
        children(self.child.id())
            .into_iter()
            .filter_map(|pid| {
                let args = cmdline(pid)?;
                let at = args.iter().position(|a| a == "demo-service")?;
                Some((args.get(at + 1)?.clone(), pid))
            })
            .collect()
    }

    /// Sends SIGINT (a Ctrl-C) and waits for it to exit.
    pub(crate) fn interrupt(mut self) -> ExitStatus {
        signal("-INT", self.child.id());
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        for (_, pid) in self.services() {
            signal("-KILL", pid);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads stdout until the banner's last line. `None` when `up` stopped because a port it
/// was given was taken meanwhile; fails with the logs if it stops otherwise or takes longer
/// than two minutes.
fn read_banner(child: &mut Child, data: &Path) -> Option<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut banner = String::new();
    while Instant::now() < give_up {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                banner.push_str(&line);
                banner.push('\n');
                if line.contains(READY) {
                    std::thread::spawn(move || for _ in rx {});
                    return Some(banner);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let up = std::fs::read_to_string(data.join("up.log")).unwrap_or_default();
    if up.contains("is not free") || up.to_ascii_lowercase().contains("address already in use") {
        return None;
    }
    let tail: Vec<&str> = up.lines().rev().take(20).collect();
    panic!(
        "`flotilla up --demo` printed no banner:\n{banner}\n--- up (newest first) ---\n{}\n{}",
        tail.join("\n"),
        logs(data)
    );
}

/// The demo services' logs (their last lines), for a failure message.
pub(crate) fn logs(data: &Path) -> String {
    let mut text = String::new();
    for name in ["users", "orders", "inventory", "payments"] {
        let log = std::fs::read_to_string(data.join("demo").join(format!("{name}.log")));
        let log = log.unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        text.push_str(&format!(
            "--- {name} (newest first) ---\n{}\n",
            tail.join("\n")
        ));
    }
    text
}

/// The direct children of `pid` (from /proc/<pid>/task/*/children).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// A process's arguments; `None` once it is gone.
pub(crate) fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None; // a zombie
    }
    let args = raw.split(|b| *b == 0).filter(|a| !a.is_empty());
    Some(
        args.map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Whether `pid` is still a running `demo-service`.
pub(crate) fn is_demo_service(pid: u32) -> bool {
    cmdline(pid).is_some_and(|args| args.iter().any(|a| a == "demo-service"))
}

pub(crate) fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// How long the demo's tests wait for something to happen before they fail.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

/// The routes' demo token (subject `demo`, valid until 2100), as the banner prints it.
pub(crate) const DEMO_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZW1vIiwiaXNzIjoiZmxvdGlsbGEtc2hvcC1kZW1vIiwiZXhwIjo0MTAyNDQ0ODAwfQ.5QK8PidQdVsa23CoRkZn3Bz3LtvGNpz_3Enf8qwJ4YA";

/// One request on a fresh connection, with the demo token on writes; (status, JSON body).
pub(crate) fn call(
    port: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = match method {
        "GET" => String::new(),
        _ => format!("authorization: Bearer {DEMO_TOKEN}\r\n"),
    };
    let headers = format!("{auth}content-type: application/json\r\n");
    let (status, body) = request(port, method, path, &headers, &body);
    (status, serde_json::from_str(&body).unwrap_or_default())
}
