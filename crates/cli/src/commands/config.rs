//! `flotilla config check`.

use crate::Failure;
use crate::cli::ConfigArgs;
use crate::platform::PlatformConfig;

pub(crate) fn check(args: &ConfigArgs) -> Result<(), Failure> {
    let config = PlatformConfig::load(args.config.as_deref())?;
    let text = toml::to_string_pretty(&config)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot print the configuration: {e}")))?;
    println!("# effective configuration: valid\n{text}");
    Ok(())
}
