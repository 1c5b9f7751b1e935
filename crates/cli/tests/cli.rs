//! The binary as a user runs it: exit codes, messages, and graceful shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::flotilla;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn write_config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    (dir, path)
}

#[test]
fn version_prints_the_crate_version() {
    let out = flotilla().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_arguments_exit_2() {
    let out = flotilla().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_check_prints_the_effective_configuration() {
    let (_d, path) = write_config("[server]\nlisten = \"127.0.0.1:4999\"\n");
    let out = support::config_check(&path);
    support::assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("127.0.0.1:4999") && stdout.contains("body_limit"),
        "{stdout}"
    );
}

/// Shared limits live in Redis: a build without the redis engine refuses them (checked below).
#[cfg(feature = "redis")]
#[test]
fn shared_rate_limits_take_defaults_and_hide_the_redis_password() {
    let (_d, path) =
        write_config("[gateway.shared_rate_limits]\nurl = \"redis://:s3cret@127.0.0.1:6379\"\n");
    let out = support::config_check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    support::assert_success(&out);
    assert!(!stdout.contains("s3cret"), "{stdout}");
    assert!(
        stdout.contains("prefix = \"flotilla\"") && stdout.contains("timeout = \"50ms\""),
        "{stdout}"
    );
}

#[test]
fn a_zero_shared_rate_limit_timeout_is_refused_by_name() {
    let (_d, path) = write_config(
        "[gateway.shared_rate_limits]\nurl = \"redis://127.0.0.1:6379\"\ntimeout = \"0s\"\n",
    );
    let out = support::config_check(&path);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gateway.shared_rate_limits.timeout"),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_value_exits_2_with_one_message_naming_the_key() {
    let (_d, path) = write_config("[server]\nrequest_timeout = \"forever\"\n");
    let out = support::config_check(&path);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.request_timeout"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_bad_environment_override_names_the_variable() {
    let out = flotilla()
        .args(["config", "check"])
        .env("FLOTILLA_SERVER__BODY_LIMIT", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FLOTILLA_SERVER__BODY_LIMIT"));
}

#[test]
fn up_serves_until_sigterm_then_exits_0() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = flotilla()
        .arg("up")
        .env("FLOTILLA_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("FLOTILLA_SERVER__DRAIN_DELAY", "0s")
        .env("FLOTILLA_STORAGE__DATA_DIR", dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    // Wait for the readiness log line rather than for a time.
    for line in lines.by_ref() {
        if line.unwrap().contains("service ready") {
            break;
        }
    }
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut res = String::new();
    s.read_to_string(&mut res).unwrap();
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    support::send_signal(child.id(), "-TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_admin_commands_variables_do_not_stop_config_check_or_up() {
    let vars = [
        ("FLOTILLA_URL", "http://127.0.0.1:1"),
        ("FLOTILLA_TOKEN", "t0ken"),
    ];
    let out = flotilla()
        .args(["config", "check"])
        .envs(vars)
        .output()
        .unwrap();
    support::assert_success(&out);
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    // Waits for "service ready" and fails on any ERROR line.
    let up = support::start_role("up", &dir.path().join("data"), &routes, &vars);
    support::stop(up);
}

/// `flotilla ... | head -1`: stdout's reader is gone before the command writes.
fn with_closed_stdout(cmd: &mut Command) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped()).output().unwrap()
}

#[test]
fn output_to_a_reader_that_went_away_ends_quietly_with_exit_0() {
    let out = with_closed_stdout(flotilla().args(["config", "check"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

fn check(config: &str, routes: Option<&str>) -> (Option<i32>, String) {
    let (dir, path) = write_config(config);
    if let Some(text) = routes {
        std::fs::write(dir.path().join("routes.toml"), text).unwrap();
    }
    let out = flotilla()
        .args(["config", "check", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_refuses_a_routes_file_that_up_would_refuse() {
    let config = "[gateway]\nroutes_file = \"routes.toml\"\n";
    let (code, stderr) = check(config, None);
    assert_eq!(code, Some(2), "missing file: {stderr}");
    assert!(stderr.contains("gateway.routes_file"), "{stderr}");

    let (code, stderr) = check(config, Some("[[routes]]\nname = \"a\"\nprefx = \"/\"\n"));
    assert_eq!(code, Some(2), "unknown key: {stderr}");
    assert!(stderr.contains("prefx"), "{stderr}");

    let unknown_upstream = "[[routes]]\nname = \"a\"\nprefix = \"/\"\nupstream = \"nowhere\"\n";
    let (code, stderr) = check(config, Some(unknown_upstream));
    assert_eq!(code, Some(2), "unknown upstream: {stderr}");
    assert!(stderr.contains("nowhere"), "{stderr}");

    let fine = "[[upstreams]]\nname = \"u\"\nurls = [\"http://127.0.0.1:9\"]\n\n\
                [[routes]]\nname = \"a\"\nprefix = \"/\"\nupstream = \"u\"\n";
    let (code, stderr) = check(config, Some(fine));
    assert_eq!(code, Some(0), "{stderr}");
}

/// Built by default (features `full`); a `--no-default-features` build is checked below.
#[cfg(all(feature = "nats", feature = "postgres"))]
#[test]
fn the_default_build_speaks_every_engine() {
    let config = "[bus]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n\n\
                  [eventstore]\nkind = \"postgres\"\nurl = \"postgres://127.0.0.1/test\"\n";
    let (code, stderr) = check(config, None);
    assert_eq!(code, Some(0), "{stderr}");
}

#[cfg(not(feature = "nats"))]
#[test]
fn config_check_refuses_an_engine_this_build_lacks() {
    let (code, stderr) = check(
        "[bus]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n",
        None,
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("bus.kind") && stderr.contains("nats"),
        "{stderr}"
    );
}

#[cfg(not(feature = "redis"))]
#[test]
fn config_check_refuses_shared_rate_limits_without_the_redis_engine() {
    let config = "[gateway.shared_rate_limits]\nurl = \"redis://127.0.0.1:6379\"\n";
    let (code, stderr) = check(config, None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("shared_rate_limits") && stderr.contains("redis"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_key_is_named_without_nested_backticks() {
    let out = flotilla()
        .args(["config", "check"])
        .env("FLOTILLA_SERVERR__LISTEN", "127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("serverr") && stderr.contains("one of `server`"),
        "{stderr}"
    );
    assert!(!stderr.contains("`one of"), "{stderr}");
}

#[test]
fn a_port_in_use_is_reported_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = flotilla()
        .arg("up")
        .env("FLOTILLA_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("FLOTILLA_STORAGE__DATA_DIR", dir.path())
        .env("FLOTILLA_GATEWAY__ENABLED", "false")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(last.contains(&port.to_string()), "{stderr}");
    assert_eq!(last.matches("in use").count(), 1, "{last}");
}
