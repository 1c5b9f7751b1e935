//! `flotilla config check`.

use crate::Failure;
use crate::cli::ConfigArgs;
use crate::platform::PlatformConfig;

/// Checks everything `up` would load (the file, the environment, the routes file, the
/// engines this binary has) and prints the effective configuration.
pub(crate) fn check(args: &ConfigArgs) -> Result<(), Failure> {
    let mut config = PlatformConfig::load(args.config.as_deref())?;
    // The gateway's builder may start background work, which needs a runtime.
    super::runtime()?
        .block_on(async { crate::wiring::check(&config) })
        .map_err(|e| Failure::Usage(crate::report::chain(&e)))?;
    redact(&mut config);
    let text = toml::to_string_pretty(&config)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot print the configuration: {e}")))?;
    crate::out::line(format_args!("# effective configuration: valid\n{text}"));
    Ok(())
}

/// Secrets are checked but never printed: tokens, and passwords inside server URLs.
fn redact(config: &mut PlatformConfig) {
    for token in [&mut config.registry.token, &mut config.server.admin_token] {
        if token.is_some() {
            *token = Some("<redacted>".into());
        }
    }
    let shared_limits = config
        .gateway
        .shared_rate_limits
        .as_mut()
        .map(|s| &mut s.url);
    let urls = [
        &mut config.bus.url,
        &mut config.eventstore.url,
        &mut config.registry.catalog.url,
    ];
    for url in urls.into_iter().flatten().chain(shared_limits) {
        *url = redact_url(url);
    }
}

fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:<redacted>@{host}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            super::redact_url("amqp://guest:pw@h:5672/%2f"),
            "amqp://guest:<redacted>@h:5672/%2f"
        );
        assert_eq!(super::redact_url("nats://h:4222"), "nats://h:4222");
    }
}
