//! `flotilla projections rebuild NAME --service URL|NAME`: asks the service hosting the
//! projection to rebuild it, then follows its progress until it is done.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::admin::seg;
use crate::admin::{Api, print};

/// How often the service's progress is read.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Which projection, on which service.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) projection: String,
    /// `http://host:port`, or a service name to look up in the registry.
    pub(super) service: String,
    /// The service's admin token.
    pub(super) token: Option<String>,
}

pub(super) async fn run(control_plane: &Api, target: Target, json: bool) -> anyhow::Result<()> {
    let base = service_url(control_plane, &target.service).await?;
    let service = Api::at("the service", base.clone(), target.token);
    let name = &target.projection;
    let path = format!("/admin/projections/{}", seg(name));
    let started = service
        .post(&format!("{path}/rebuild"), json!({}), "application/json")
        .await
        .with_context(|| format!("{base} refused to rebuild projection {name:?}"))?;
    let id = started["rebuild"]["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("{base} answered no rebuild id: is it a Flotilla service?"))?;
    let bar = progress_bar(json);
    let outcome = follow(&service, &path, id, &bar).await;
    bar.finish_and_clear();
    let status = outcome?;
    if json {
        print(&status, None, true);
    } else {
        let position = status["rebuild"]["position"].as_u64().unwrap_or(0);
        crate::out::line(format_args!(
            "projection {name} rebuilt: replayed up to position {position}"
        ));
    }
    Ok(())
}

/// Polls the projection until rebuild `id` is done (its status) or failed (an error).
async fn follow(service: &Api, path: &str, id: u64, bar: &ProgressBar) -> anyhow::Result<Value> {
    loop {
        let status = service
            .get(path)
            .await
            .context("reading rebuild progress")?;
        let rebuild = &status["rebuild"];
        if rebuild["id"].as_u64() != Some(id) {
            bail!("rebuild {id} is no longer the projection's latest; check the service's logs");
        }
        bar.set_length(rebuild["target"].as_u64().unwrap_or(0));
        bar.set_position(rebuild["position"].as_u64().unwrap_or(0));
        match rebuild["state"].as_str() {
            Some("done") => return Ok(status),
            Some("failed") => {
                let error = rebuild["error"].as_str().unwrap_or("no reason given");
                bail!("the rebuild failed: {error}");
            }
            _ => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

/// A bar of positions replayed out of the target, on stderr; hidden when stdout is not a
/// terminal (a script) or the output is JSON.
fn progress_bar(json: bool) -> ProgressBar {
    if json || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("rebuilding {bar:40} {pos}/{len} positions ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// The service's base URL: `--service` itself when it is an `http://` URL, otherwise the
/// one passing instance of the service of that name in the registry.
async fn service_url(control_plane: &Api, service: &str) -> anyhow::Result<String> {
    if service.starts_with("http://") {
        return Ok(service.trim_end_matches('/').to_owned());
    }
    if service.contains("://") {
        bail!("--service {service:?}: only http:// URLs are supported");
    }
    let name = flotilla_core::ServiceName::new(service).map_err(|e| {
        anyhow!("--service {service:?} is neither an http:// URL nor a service name: {e}")
    })?;
    let found = control_plane
        .get(&format!("/api/v1/registry/services/{}", seg(name.as_str())))
        .await
        .with_context(|| format!("looking service {service:?} up in the registry"))?;
    let instance = only_instance(&found, service)?;
    instance_url(instance).map_err(|e| anyhow!("the registry's instance of {service:?} {e}"))
}

/// The single instance the registry lists. Replicas of a service share each projection's
/// checkpoint, so a projection is hosted by one replica at a time; with several instances
/// listed, picking one could ask a replica that does not host it, so the caller must say which.
fn only_instance<'a>(found: &'a Value, service: &str) -> anyhow::Result<&'a Value> {
    match found["instances"].as_array().map(Vec::as_slice) {
        None | Some([]) => bail!("the registry knows no passing instance of service {service:?}"),
        Some([one]) => Ok(one),
        Some(many) => bail!(
            "the registry lists {} instances of service {service:?}; a projection is hosted by \
             one replica at a time, so pass the URL of the replica that hosts it (--service http://HOST:PORT)",
            many.len()
        ),
    }
}

fn instance_url(instance: &Value) -> Result<String, &'static str> {
    if instance["scheme"].as_str() == Some("https") {
        return Err("is served over https, which this command does not speak; pass its URL");
    }
    let address = instance["address"].as_str().ok_or("has no address")?;
    let port = instance["port"].as_u64().ok_or("has no port")?;
    let host = match address.contains(':') {
        true => format!("[{address}]"),
        false => address.to_owned(),
    };
    Ok(format!("http://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_urls_bracket_ipv6_addresses() {
        let v4 = json!({"address": "10.0.0.5", "port": 8081});
        assert_eq!(instance_url(&v4).as_deref(), Ok("http://10.0.0.5:8081"));
        let v6 = json!({"address": "::1", "port": 8081});
        assert_eq!(instance_url(&v6).as_deref(), Ok("http://[::1]:8081"));
        assert_eq!(instance_url(&json!({"port": 1})), Err("has no address"));
    }

    #[test]
    fn a_service_name_must_resolve_to_exactly_one_instance() {
        let one = json!({"instances": [{"address": "10.0.0.5", "port": 8081}]});
        assert_eq!(only_instance(&one, "orders").unwrap()["port"], 8081);
        let none = json!({"instances": []});
        let err = only_instance(&none, "orders").unwrap_err().to_string();
        assert!(err.contains("no passing instance"), "{err}");
        let two = json!({"instances": [{"port": 1}, {"port": 2}]});
        let err = only_instance(&two, "orders").unwrap_err().to_string();
        assert!(
            err.contains("2 instances") && err.contains("--service http://"),
            "{err}"
        );
    }
}
