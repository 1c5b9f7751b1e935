//! Test helpers shared across the workspace (dev-only; nothing ships with it).
//!
//! - [`backend`]: the address of a real server for a backend suite, or a loud, recorded skip
//!   when the server is absent — unless `FLOTILLA_REQUIRE_BACKENDS` demands it, as CI does.
//! - [`tool`], [`tool_at`]: the path of an ecosystem tool a test drives (`promtool`, a Python
//!   SDK's interpreter), or the same loud, recorded skip when it is not installed
//!   (`scripts/test-tools.sh install` installs them).
//! - [`unique_name`]: names that never collide between runs against shared servers.
//! - [`prometheus`]: a strict check of the Prometheus text exposition format.
//! - [`logs`]: capture `tracing` output in a test to assert on it.

pub mod logs;
pub mod prometheus;

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A real server a backend suite needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL, `FLOTILLA_TEST_POSTGRES_URL` or `postgres://root@127.0.0.1:5432/test`.
    Postgres,
    /// RabbitMQ, `FLOTILLA_TEST_AMQP_URL` or `amqp://guest:guest@127.0.0.1:5672/%2f`.
    RabbitMq,
    /// NATS with JetStream, `FLOTILLA_TEST_NATS_URL` or `nats://127.0.0.1:4222`.
    Nats,
    /// Redis, `FLOTILLA_TEST_REDIS_URL` or `redis://127.0.0.1:6379`.
    Redis,
}

impl Backend {
    /// The short name used in `FLOTILLA_REQUIRE_BACKENDS` and in skip messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::RabbitMq => "rabbitmq",
            Self::Nats => "nats",
            Self::Redis => "redis",
        }
    }

    fn env_and_default(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Postgres => (
                "FLOTILLA_TEST_POSTGRES_URL",
                "postgres://root@127.0.0.1:5432/test",
                "127.0.0.1:5432",
            ),
            Self::RabbitMq => (
                "FLOTILLA_TEST_AMQP_URL",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "127.0.0.1:5672",
            ),
            Self::Nats => (
                "FLOTILLA_TEST_NATS_URL",
                "nats://127.0.0.1:4222",
                "127.0.0.1:4222",
            ),
            Self::Redis => (
                "FLOTILLA_TEST_REDIS_URL",
                "redis://127.0.0.1:6379",
                "127.0.0.1:6379",
            ),
        }
    }

    /// The URL of the server and the socket address to probe.
    pub fn url(self) -> (String, String) {
        let (var, url, addr) = self.env_and_default();
        match std::env::var(var) {
            Ok(u) => {
                let probe = host_port(&u).unwrap_or_else(|| addr.to_owned());
                (u, probe)
            }
            Err(_) => (url.to_owned(), addr.to_owned()),
        }
    }
}

fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port.contains(':').then(|| host_port.to_owned())
}

/// Whether CI (or the caller) insists this backend's suite runs.
pub fn required(backend: Backend) -> bool {
    required_by_name(&[backend.name()])
}

/// Whether `FLOTILLA_REQUIRE_BACKENDS` lists `all` or one of `names`.
fn required_by_name(names: &[&str]) -> bool {
    std::env::var("FLOTILLA_REQUIRE_BACKENDS").is_ok_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|b| b == "all" || names.contains(&b))
    })
}

/// The URL of `backend`'s server if it answers a TCP connect within a second.
///
/// When it does not: panics if the backend is [`required`], otherwise prints a `SKIPPED` line
/// to stderr, appends it to the file named by `FLOTILLA_SKIP_LOG` (the test script prints that
/// file at the end of the run), and returns `None` so the suite returns early.
pub fn backend(backend: Backend, suite: &str) -> Option<String> {
    let (url, probe) = backend.url();
    if reachable(&probe) {
        return Some(url);
    }
    let msg = format!(
        "SKIPPED {suite}: no {} server answers at {probe}",
        backend.name()
    );
    skip(&msg, required(backend));
    None
}

/// The path of the program `name` on `PATH`, for a test that drives an ecosystem tool.
///
/// When it is absent: a failure if `FLOTILLA_REQUIRE_BACKENDS` lists `all`, `tools` or `name`,
/// otherwise a recorded `SKIPPED` line and `None`, as [`backend`] does.
pub fn tool(name: &str, suite: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let msg = format!("SKIPPED {suite}: {name} is not on PATH (scripts/test-tools.sh install)");
        skip(&msg, required_by_name(&["tools", name]));
    }
    found
}

/// As [`tool`], for a tool installed at a known `path` (a virtual environment's interpreter).
pub fn tool_at(name: &str, path: &Path, suite: &str) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_owned());
    }
    let msg = format!(
        "SKIPPED {suite}: {name} is not installed at {} (scripts/test-tools.sh install)",
        path.display()
    );
    skip(&msg, required_by_name(&["tools", name]));
    None
}

/// Fails when the skipped suite is `required`; otherwise prints `msg` to stderr and appends it
/// to the file named by `FLOTILLA_SKIP_LOG` (the test script prints that file at the end).
fn skip(msg: &str, required: bool) {
    assert!(
        !required,
        "{msg}, and FLOTILLA_REQUIRE_BACKENDS requires it"
    );
    eprintln!("{msg}");
    if let Ok(path) = std::env::var("FLOTILLA_SKIP_LOG") {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut f) = file {
            let _ = writeln!(f, "{msg}");
        }
    }
}

fn reachable(addr: &str) -> bool {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default();
    addrs
        .iter()
        .any(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok())
}

/// A name unique to this test run and call, safe as a queue, stream, subject, schema or key
/// prefix: lowercase letters, digits and `_`, starting with `prefix`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}_{}_{:x}_{n}",
        std::process::id(),
        nanos % 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_stay_in_charset() {
        let a = unique_name("t");
        let b = unique_name("t");
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }

    #[test]
    fn tools_are_found_on_path_or_at_their_path() {
        assert!(tool("sh", "t").is_some_and(|p| p.ends_with("sh")));
        let sh = tool("sh", "t").unwrap_or_default();
        assert_eq!(tool_at("sh", &sh, "t"), Some(sh));
    }

    #[test]
    fn host_port_is_read_from_urls() {
        assert_eq!(
            host_port("amqp://u:p@h:5672/%2f").as_deref(),
            Some("h:5672")
        );
        assert_eq!(
            host_port("redis://127.0.0.1:6380").as_deref(),
            Some("127.0.0.1:6380")
        );
        assert_eq!(host_port("postgres://h/db"), None);
    }
}
