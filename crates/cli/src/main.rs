//! The `flotilla` binary (layer L4): parses the command line, loads configuration, wires
//! backends into components and runs them. It holds no logic of its own beyond wiring; errors
//! are reported once, here, with the exit code the class of failure calls for.

mod admin;
mod auth;
mod cli;
mod commands;
mod locate;
mod out;
mod platform;
mod report;
mod settings;
mod signals;
mod table;
mod wiring;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad command line or configuration: exit 2.
    Usage(String),
    /// Anything that went wrong while running: exit 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Runtime(e)
    }
}

impl From<flotilla::ConfigError> for Failure {
    fn from(e: flotilla::ConfigError) -> Self {
        Self::Usage(report::config_error(&e))
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("flotilla: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("flotilla: {}", report::chain(&e));
            ExitCode::from(1)
        }
    }
}
