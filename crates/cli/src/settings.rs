//! Loading `flotilla.toml`: defaults, then the file, then `FLOTILLA_<SECTION>__<KEY>`
//! variables, validated.
//!
//! The SDK's loader reads every `FLOTILLA_` variable as configuration. The binary's own
//! variables (`FLOTILLA_URL`, `FLOTILLA_TOKEN` of the admin commands, ...) share that prefix
//! and are not configuration keys: read as such, exporting them for the admin commands would
//! stop `flotilla up` with "unknown field". So the binary loads with them left out.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use flotilla::config::{ConfigError, ENV_PREFIX, Validate};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Variables of the command line itself (after the prefix), never configuration keys.
const CLI_VARIABLES: &[&str] = &[
    "CONFIG",
    "URL",
    "TOKEN",
    "SERVICE_TOKEN",
    "DEMO_PORTS",
    "DEMO_TOKEN",
];

/// `FLOTILLA_SHOP__*` configures the example shop's services, which `up --demo` starts with
/// its own environment: settings of theirs, not of the platform.
fn is_demo_service_setting(key: &str) -> bool {
    key.get(..6)
        .is_some_and(|section| section.eq_ignore_ascii_case("SHOP__"))
}

/// Loads `T` from defaults, the optional TOML `file` and the environment, then validates it.
pub(crate) fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            let msg = format!("file {} does not exist", path.display());
            return Err(ConfigError::invalid("(file)", msg));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let env = Env::prefixed(ENV_PREFIX)
        .filter(|key| !is_demo_service_setting(key.as_str()))
        .split("__")
        .ignore(CLI_VARIABLES);
    let value: T = figment.merge(env).extract().map_err(from_figment)?;
    value.validate()?;
    Ok(value)
}

/// Names the key and where its bad value came from: the file, or the exact variable.
fn from_figment(err: figment::Error) -> ConfigError {
    let path = &err.path;
    let key = match path.is_empty() {
        true => "(root)".to_owned(),
        false => path.join("."),
    };
    let origin = err.metadata.as_ref().map(|m| match &m.source {
        Some(src) => src.to_string(),
        None => m.name.to_string(),
    });
    let origin = origin.map(|o| match o.contains("environment") && !path.is_empty() {
        true => format!("{ENV_PREFIX}{}", path.join("__").to_uppercase()),
        false => o,
    });
    ConfigError {
        key,
        message: err.kind.to_string(),
        origin,
    }
}
