//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Flotilla: service registry, gateway, event bus, event store and sagas in one binary.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command that reads configuration takes.
#[derive(Debug, Args, Clone)]
pub(crate) struct ConfigArgs {
    /// Configuration file (TOML). Environment variables `FLOTILLA_<SECTION>__<KEY>` override it.
    #[arg(short, long, env = "FLOTILLA_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the whole platform in one process, on embedded storage.
    Up(ConfigArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration and print the effective result (defaults, file and environment
    /// merged), or every error with the key it concerns.
    Check(ConfigArgs),
}
