//! `flotilla up --demo`: the platform plus the example shop (docs/shop.md), each of the shop's
//! four services a child process of `up` running this same binary (`flotilla demo-service
//! <name>`), so a fresh clone needs nothing but `flotilla`. The children register with the
//! control plane like any service would; `up` restarts one that dies, seeds the products,
//! routes `/api/...` to the shop and, on Ctrl-C, stops the children before the platform.
//!
//! The `place-order` saga is not handed to the control plane's orchestrator: its `order` and
//! `confirm` steps are functions of the orders service, whose own orchestrator runs it (on the
//! platform's event store, so `flotilla sagas ls` still lists its instances).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use flotilla::MicroserviceBuilder;
use flotilla_shop::Service;

use super::demo_supervise::{Child, Supervisor};
use crate::Failure;
use crate::cli::UpArgs;
use crate::platform::PlatformConfig;

/// The shop's gateway routes, written into the data directory for the gateway to read.
const ROUTES: &str = include_str!("../../../../examples/shop/routes.toml");

/// A token for the routes' documented demo key (HS256, subject `demo`, valid until 2100).
pub(crate) const DEMO_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZW1vIiwiaXNzIjoiZmxvdGlsbGEtc2hvcC1kZW1vIiwiZXhwIjo0MTAyNDQ0ODAwfQ.5QK8PidQdVsa23CoRkZn3Bz3LtvGNpz_3Enf8qwJ4YA";

/// The order of `--demo-ports`.
const PORT_ORDER: [Service; 4] = [
    Service::Users,
    Service::Orders,
    Service::Inventory,
    Service::Payments,
];

/// The shop's services and the ports they listen on.
#[derive(Debug, Clone)]
pub(crate) struct Demo {
    ports: Vec<(Service, u16)>,
}

impl Demo {
    /// `Some` with `--demo`.
    pub(crate) fn from_args(args: &UpArgs) -> Result<Option<Demo>, Failure> {
        if !args.demo {
            return Ok(None);
        }
        let ports: Vec<(Service, u16)> = PORT_ORDER
            .into_iter()
            .zip(args.demo_ports.iter().copied())
            .collect();
        if ports.len() != PORT_ORDER.len() {
            return Err(Failure::Usage(
                "--demo-ports needs 4 ports: users,orders,inventory,payments".into(),
            ));
        }
        Ok(Some(Demo { ports }))
    }

    /// Points the gateway at the shop's routes (written into the data directory) unless a
    /// routes file is configured, and checks the services' ports are free, naming a taken one.
    pub(crate) fn prepare(&self, config: &mut PlatformConfig) -> Result<(), Failure> {
        if !config.gateway.enabled {
            return Err(Failure::Usage(
                "--demo serves the shop through the gateway: gateway.enabled must be true".into(),
            ));
        }
        for (service, port) in &self.ports {
            if let Err(e) = TcpListener::bind(("127.0.0.1", *port)) {
                return Err(Failure::Usage(format!(
                    "port {port} for the demo's {} service is not free ({e}); choose others \
                     with --demo-ports users,orders,inventory,payments",
                    service.name()
                )));
            }
        }
        let dir = demo_dir(config);
        std::fs::create_dir_all(&dir).map_err(|e| {
            Failure::Runtime(anyhow::anyhow!("cannot create {}: {e}", dir.display()))
        })?;
        if config.gateway.routes_file.is_none() {
            config.gateway.routes_file = Some(write_routes(&dir)?);
        }
        Ok(())
    }

    /// Adds the supervised children (started with the control plane, stopped as it begins
    /// to drain, before its listener closes) and, once they run, the seeding and the banner.
    pub(crate) fn attach(
        self,
        builder: MicroserviceBuilder,
        config: &PlatformConfig,
    ) -> Result<MicroserviceBuilder, Failure> {
        let exe = std::env::current_exe().map_err(|e| {
            Failure::Runtime(anyhow::anyhow!("cannot find the flotilla binary: {e}"))
        })?;
        let control_plane = format!("http://{}", crate::locate::reachable(config.server.listen));
        let children: Vec<Child> = self
            .ports
            .iter()
            .map(|(service, port)| child(&exe, *service, *port, &control_plane, config))
            .collect();
        let supervisor = Supervisor::new(children);
        let banner = Banner {
            control_plane,
            gateway: format!("http://{}", crate::locate::reachable(config.gateway.listen)),
            services: self.ports.iter().map(|(s, p)| (s.name(), *p)).collect(),
            logs: demo_dir(config),
        };
        let stopper = supervisor.clone();
        Ok(builder
            .task("demo", move |token| async move {
                supervisor.start();
                super::demo_seed::seed_then_announce(&banner, token).await;
            })
            .on_drain(flotilla::Hook::new("demo", move |_| async move {
                stopper.stop().await;
                Ok(())
            })))
    }
}

/// Where everything is, printed once the shop is seeded.
#[derive(Debug, Clone)]
pub(crate) struct Banner {
    pub(crate) control_plane: String,
    pub(crate) gateway: String,
    pub(crate) services: Vec<(&'static str, u16)>,
    pub(crate) logs: PathBuf,
}

impl Banner {
    /// The direct URL of one of the shop's services.
    pub(crate) fn service(&self, name: &str) -> String {
        let port = self.services.iter().find(|(n, _)| *n == name).map(|p| p.1);
        format!("http://127.0.0.1:{}", port.unwrap_or_default())
    }
}

/// Where the demo keeps its routes file and the services' logs.
fn demo_dir(config: &PlatformConfig) -> PathBuf {
    config.storage.data_dir.join("demo")
}

fn write_routes(dir: &std::path::Path) -> Result<PathBuf, Failure> {
    let path = dir.join("routes.toml");
    std::fs::write(&path, ROUTES).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot write the demo's routes to {}: {e}",
            path.display()
        ))
    })?;
    Ok(path)
}

/// How a child is started: this binary, its service's listener, the control plane, and the
/// registry token when one is set. `FLOTILLA_SHOP__*` variables pass through.
fn child(
    exe: &std::path::Path,
    service: Service,
    port: u16,
    control_plane: &str,
    config: &PlatformConfig,
) -> Child {
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let mut env = vec![
        (
            "FLOTILLA_PLATFORM__URL".to_owned(),
            control_plane.to_owned(),
        ),
        ("FLOTILLA_SERVICE__LISTEN".to_owned(), listen.to_string()),
    ];
    if let Some(token) = &config.registry.token {
        env.push(("FLOTILLA_PLATFORM__TOKEN".to_owned(), token.clone()));
    }
    Child {
        name: service.name(),
        program: exe.to_owned(),
        args: vec!["demo-service".into(), service.name().into()],
        env,
        log: demo_dir(config).join(format!("{}.log", service.name())),
        grace: Duration::from_secs(10),
    }
}

/// `flotilla demo-service <name>`: one service of the shop, as `up --demo` starts it. It
/// dies with its parent, so a `kill -9` of `up` leaves no service behind.
pub(crate) fn service(name: &str) -> Result<(), Failure> {
    let service = Service::parse(name).ok_or_else(|| {
        Failure::Usage(format!(
            "unknown demo service {name:?}: users, orders, inventory or payments"
        ))
    })?;
    super::demo_supervise::die_with_parent();
    super::runtime()?
        .block_on(flotilla_shop::run(service, None))
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("demo service {name}: {e}")))
}
