//! One module per command; each returns `Failure` so `main` reports errors once.

mod admin;
mod backup;
mod bus;
mod bus_role;
mod config;
mod demo;
mod demo_http;
pub(crate) mod demo_load;
mod demo_load_stats;
mod demo_seed;
mod demo_supervise;
mod gateway;
mod migrate;
mod probe;
mod rebuild;
mod role;
mod routes;
mod sagas;
mod store_role;
mod streams;
mod up;

use crate::Failure;
use crate::cli::{Cli, Command, ConfigCommand};
use crate::wiring::Role;

pub(crate) fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Up(args) => up::run(&args.config, Role::All, demo::Demo::from_args(&args)?),
        Command::Registry(args) => up::run(&args, Role::Registry, None),
        Command::Orchestrator(args) => up::run(&args, Role::Orchestrator, None),
        Command::Gateway(args) => gateway::run(&args),
        Command::Bus(args) => bus_role::run(&args),
        Command::Store(args) => store_role::run(&args),
        Command::Probe { url, timeout } => probe::run(&url, timeout),
        Command::Config(ConfigCommand::Check(args)) => config::check(&args),
        Command::Services { command, api } => admin::services(command, &api),
        Command::Topics { command, api } => bus::topics(command, &api),
        Command::Events { command, api } => bus::events(command, &api),
        Command::Dlq { command, api } => bus::dlq(command, &api),
        Command::Groups { command, api } => bus::groups(command, &api),
        Command::Backup {
            dest,
            data_dir,
            api,
        } => backup::run(&dest, data_dir.as_deref(), &api),
        Command::Migrate(args) => migrate::run(&args),
        Command::Streams { command, api } => streams::streams(command, &api),
        Command::Projections { command, api } => streams::projections(command, &api),
        Command::Sagas { command, api } => sagas::run(command, &api),
        Command::Routes { command, api } => routes::run(command, &api),
        Command::Demo(command) => demo_load::run(command),
        Command::DemoService { service } => demo::service(&service),
    }
}

/// A multi-threaded runtime for commands that serve or call over the network.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot start the async runtime: {e}")))
}
