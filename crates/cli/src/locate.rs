//! Where the admin commands find the control plane when `--url` is not given: at
//! `server.listen` of the configuration `flotilla up` would read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::cli::ApiArgs;
use crate::platform::PlatformConfig;

/// The configuration file `up` reads by default when it is present.
const DEFAULT_FILE: &str = "flotilla.toml";

/// The base URL and token to call: `--url` and `--token` as given; without `--url`, the
/// configuration's listener, and its `registry.token` unless `--token` is given (the token
/// is only taken from the file for the control plane that same file describes).
pub(crate) fn control_plane(args: &ApiArgs) -> Result<(String, Option<String>), String> {
    if let Some(url) = &args.url {
        return Ok((url.clone(), args.token.clone()));
    }
    let file = args
        .config
        .clone()
        .or_else(|| Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.exists()));
    let config = PlatformConfig::load(file.as_deref()).map_err(|e| {
        let from = file.as_deref().map_or("the environment".into(), describe);
        format!(
            "cannot find the control plane from {from} ({}); pass --url",
            crate::report::config_error(&e)
        )
    })?;
    let token = args.token.clone().or(config.registry.token);
    Ok((format!("http://{}", reachable(config.server.listen)), token))
}

fn describe(path: &Path) -> String {
    path.display().to_string()
}

/// A listener on every interface is reached on loopback.
pub(crate) fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_wildcard_listener_is_reached_on_loopback() {
        let at = |s: &str| super::reachable(s.parse().unwrap()).to_string();
        assert_eq!(at("0.0.0.0:4400"), "127.0.0.1:4400");
        assert_eq!(at("[::]:4400"), "[::1]:4400");
        assert_eq!(at("10.0.0.5:4400"), "10.0.0.5:4400");
    }
}
