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

/// Options every admin command takes.
#[derive(Debug, Args, Clone)]
pub(crate) struct ApiArgs {
    /// The control plane's base URL.
    #[arg(
        long,
        env = "FLOTILLA_URL",
        default_value = "http://127.0.0.1:4400",
        global = true
    )]
    pub(crate) url: String,
    /// Bearer token for writes (the registry's `token`).
    #[arg(long, env = "FLOTILLA_TOKEN", global = true, hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the whole platform in one process, on embedded storage.
    Up(ConfigArgs),
    /// Run the service registry alone (its HTTP and Consul-compatible API on `server.listen`).
    Registry(ConfigArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Services and instances in the registry.
    Services {
        #[command(subcommand)]
        command: ServicesCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Topics of the event bus.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Publish events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The bus's dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Projections (persistent subscribers of the event store).
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Event-store streams.
    Streams {
        #[command(subcommand)]
        command: StreamsCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServicesCommand {
    /// List services with their instance counts.
    Ls,
    /// Show one service's instances and their health.
    Show {
        /// The service name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TopicsCommand {
    /// List topics.
    Ls,
}

#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// Publish one CloudEvent to a topic.
    Publish {
        /// The topic (`orders.created`).
        topic: String,
        /// The event type (`com.example.order.created`).
        #[arg(long = "type")]
        ty: String,
        /// The event source. Default `/flotilla-cli`.
        #[arg(long, default_value = "/flotilla-cli")]
        source: String,
        /// JSON data.
        #[arg(long, default_value = "null")]
        data: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead-lettered events.
    Ls,
    /// Show one dead-lettered event with its failure.
    Show {
        /// The entry id.
        id: String,
    },
    /// Deliver a dead-lettered event again.
    Replay {
        /// The entry id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum StreamsCommand {
    /// List streams.
    Ls,
    /// Read a stream forward.
    Read {
        /// The stream id (`order-42`).
        stream: String,
    },
    /// Follow every new event (of one stream, when given) as it is appended, until Ctrl-C.
    Tail {
        /// Only events of this stream.
        stream: Option<String>,
        /// Start after this global position instead of at the end.
        #[arg(long)]
        from: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProjectionsCommand {
    /// List persistent subscribers (projections) with their checkpoints and lag.
    Ls,
    /// Rebuild a projection hosted by a service: empty its read model and replay history,
    /// showing progress until it is done.
    Rebuild {
        /// The projection's name.
        name: String,
        /// The service hosting it: its URL (`http://127.0.0.1:8081`) or its name in the
        /// registry at `--url`.
        #[arg(long, value_name = "URL|NAME")]
        service: String,
        /// Bearer token of the service's admin routes (its `service.admin_token`).
        #[arg(long, env = "FLOTILLA_SERVICE_TOKEN", hide_env_values = true)]
        service_token: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration and print the effective result (defaults, file and environment
    /// merged), or every error with the key it concerns.
    Check(ConfigArgs),
}
