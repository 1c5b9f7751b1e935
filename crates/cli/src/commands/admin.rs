//! Admin commands: thin calls of the control plane's HTTP API.

use crate::Failure;
use crate::admin::{Api, print};
use crate::cli::{ApiArgs, ServicesCommand};

pub(super) fn run_with(
    args: &ApiArgs,
    f: impl AsyncFnOnce(Api) -> anyhow::Result<()>,
) -> Result<(), Failure> {
    let api = Api::new(args).map_err(|e| Failure::Usage(e.to_string()))?;
    super::runtime()?.block_on(f(api)).map_err(Failure::Runtime)
}

/// Encodes a path segment supplied by the user.
pub(super) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn services(cmd: ServicesCommand, args: &ApiArgs) -> Result<(), Failure> {
    run_with(args, async |api| {
        let (path, key) = match cmd {
            ServicesCommand::Ls => ("/api/v1/registry/services".to_owned(), "services"),
            ServicesCommand::Show { name } => (
                format!(
                    "/api/v1/registry/services/{}?status=passing,warning,critical,draining",
                    seg(&name)
                ),
                "instances",
            ),
        };
        print(&api.get(&path).await?, Some(key), args.json);
        Ok(())
    })
}
