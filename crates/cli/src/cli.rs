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
    /// The control plane's base URL. Default: `http://` + `server.listen` of the
    /// configuration file (`--config`, else `./flotilla.toml` when present), else
    /// `http://127.0.0.1:4400`.
    #[arg(long, env = "FLOTILLA_URL", global = true)]
    pub(crate) url: Option<String>,
    /// Configuration file that locates the control plane (and its `registry.token`) when
    /// `--url` is not given.
    #[arg(long, env = "FLOTILLA_CONFIG", global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Bearer token for writes (the registry's `token`).
    #[arg(long, env = "FLOTILLA_TOKEN", global = true, hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Print one JSON document instead of a table (followers: one JSON object per line).
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the whole platform in one process, on embedded storage.
    Up(UpArgs),
    /// Run the service registry alone (its HTTP and Consul-compatible API on `server.listen`).
    Registry(ConfigArgs),
    /// Run the saga orchestrator alone: its API on `server.listen`, on the configured event
    /// store and bus, with a registry for its HTTP steps (`[sagas]`; docs/sagas.md).
    Orchestrator(ConfigArgs),
    /// Run the API gateway alone: client traffic on `gateway.listen`, upstreams from the
    /// registry at `[discovery] registry_url`, its admin API on `server.listen`.
    Gateway(ConfigArgs),
    /// Run the event bus's HTTP API alone (`/api/v1/bus` on `server.listen`) over the engine
    /// `[bus]` names.
    Bus(ConfigArgs),
    /// Run the event store's HTTP API alone (`/api/v1/streams` on `server.listen`) over the
    /// engine `[eventstore]` names.
    Store(ConfigArgs),
    /// GET a URL; exit 0 on a 2xx answer, 1 otherwise (a container health check that needs no
    /// curl).
    Probe {
        /// The URL, e.g. `http://127.0.0.1:4400/health`.
        url: String,
        /// The longest wait for the answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
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
    /// Publish events, or follow them as they are published.
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
    /// Consumer groups of the event bus.
    Groups {
        #[command(subcommand)]
        command: GroupsCommand,
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
    /// Copy the embedded database to a new file: through the running control plane, or
    /// from the data directory with `--data-dir` when it is stopped. Restore by putting the
    /// copy in place as `flotilla.db` of a stopped platform (docs/RELIABILITY.md).
    Backup {
        /// The new file; it must not exist. Online, a path on the control plane's machine
        /// (a relative one is taken from this directory).
        dest: PathBuf,
        /// Copy the database of this data directory directly, without a running control
        /// plane.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Copy a stopped `flotilla up`'s data (event store, bus groups with their undelivered
    /// events and dead letters, registry catalog) into the engines a target configuration
    /// names (PostgreSQL, NATS, ...), then verify the copy. Resumable: run it again after an
    /// interruption. Exit 1 when source and target differ (docs/migrate.md).
    Migrate(MigrateArgs),
    /// Event-store streams.
    Streams {
        #[command(subcommand)]
        command: StreamsCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Saga instances: list, show with their timeline, start, cancel, retry.
    Sagas {
        #[command(subcommand)]
        command: SagasCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The gateway's routes, with their live request rate and breaker state.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The example shop started by `flotilla up --demo`.
    #[command(subcommand)]
    Demo(crate::commands::demo_load::DemoCommand),
    /// Runs one service of the example shop (what `up --demo` starts, once per service).
    #[command(hide = true)]
    DemoService {
        /// users, orders, inventory or payments.
        service: String,
    },
}

/// `flotilla migrate`'s options.
#[derive(Debug, Args, Clone)]
pub(crate) struct MigrateArgs {
    /// The stopped platform's data directory (its `storage.data_dir`). Progress is kept there
    /// in `migrate-progress.json`.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
    /// The target configuration (TOML), e.g. `eventstore.kind = "postgres"` and
    /// `bus.kind = "nats"` with their URLs. Environment variables `FLOTILLA_<SECTION>__<KEY>`
    /// override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) to: PathBuf,
    /// Only report what would be copied.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print the verification as one JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `flotilla up`'s options.
#[derive(Debug, Args, Clone)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
    /// Also start the example shop (users, orders, inventory, payments) as supervised child
    /// processes, seed its products and route `/api/...` to it (docs/getting-started.md).
    #[arg(long)]
    pub(crate) demo: bool,
    /// The shop's ports with `--demo`, in the order users,orders,inventory,payments.
    #[arg(
        long,
        env = "FLOTILLA_DEMO_PORTS",
        value_delimiter = ',',
        value_name = "PORTS",
        default_value = "8101,8102,8103,8104"
    )]
    pub(crate) demo_ports: Vec<u16>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RoutesCommand {
    /// List routes in match order, with their request rate and their upstream's breakers.
    Ls {
        /// How long to count requests for the rate (`1s`, `500ms`).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        window: std::time::Duration,
    },
    /// Show one route: its configuration, rate and its upstream's instances with their
    /// breakers.
    Show {
        /// The route's name.
        name: String,
        /// How long to count requests for the rate.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        window: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SagasCommand {
    /// List instances, newest first.
    Ls {
        /// Only instances of this saga.
        #[arg(long)]
        name: Option<String>,
        /// Only instances in this status: running, compensating, completed, compensated,
        /// stuck.
        #[arg(long)]
        status: Option<String>,
        /// At most this many (default 100).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one instance: its status, steps and timeline.
    Show {
        /// The instance id.
        id: String,
    },
    /// Start an instance of a saga; prints its id.
    Start {
        /// The saga's name.
        name: String,
        /// Its input, as JSON.
        #[arg(long, default_value = "{}")]
        data: String,
        /// An id of your own: starting again with the same id and input does nothing.
        #[arg(long)]
        id: Option<String>,
    },
    /// Turn a running instance back: it compensates its completed steps.
    Cancel {
        /// The instance id.
        id: String,
    },
    /// Give a stuck instance's failed compensation (or step) a fresh retry budget.
    Retry {
        /// The instance id.
        id: String,
    },
    /// List the saga definitions the control plane runs.
    Definitions,
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
    /// Follow events published to topics matching a pattern, from now on, until Ctrl-C.
    ///
    /// Reads through a temporary group of its own (`tail-<random>`), so no real group loses
    /// an event; the group is deleted on exit. If the command is killed (-9), the group stays:
    /// list leftovers with `flotilla groups ls` and delete them with `flotilla groups rm`.
    Tail {
        /// The topic pattern (`orders.*`, `orders.>`, `>` for everything).
        pattern: String,
        /// Only print events of this type (others are skipped).
        #[arg(long = "type")]
        ty: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead-lettered events.
    Ls {
        /// Only this group's.
        #[arg(long)]
        group: Option<String>,
    },
    /// Show one dead-lettered event with its failure.
    Show {
        /// The entry id.
        id: String,
    },
    /// Deliver dead-lettered events again: one by id, or every entry of a group with `--all`.
    Replay {
        /// The entry id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Replay every entry of `--group`, with a progress bar on a terminal.
        #[arg(long, requires = "group")]
        all: bool,
        /// The group whose entries `--all` replays.
        #[arg(long, requires = "all")]
        group: Option<String>,
    },
    /// Delete dead letters of a group for good: the ids given, or all of them.
    Purge {
        /// The group.
        #[arg(long)]
        group: String,
        /// Only these entries (default: every entry of the group).
        ids: Vec<String>,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// List consumer groups with their pattern, lag and dead letters.
    Ls,
    /// Delete groups with their pending events and dead letters.
    Rm {
        /// The group names.
        #[arg(required = true)]
        names: Vec<String>,
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
