//! The platform split into its roles as deploy/compose.yaml runs it, as processes on this
//! machine: two registries on one PostgreSQL catalog, the bus on NATS, the event store on
//! PostgreSQL, the internal `platform-api` gateway (deploy/config/platform-api.routes.toml,
//! its hosts pointed here), a public gateway with the shop's routes
//! (deploy/config/shop.routes.toml) and the shop's four services. An order placed through
//! the public gateway is confirmed by the place-order saga. Skipped visibly without a
//! PostgreSQL or NATS server.
#![cfg(all(feature = "postgres", feature = "nats"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod demo_support;
mod support;

use std::path::Path;
use std::process::{Child, Stdio};

use demo_support::{PATIENCE, call};
use flotilla_testkit::{Backend, backend, unique_name};
use serde_json::json;
use support::{Up, eventually, flotilla, free_port, http, start_role, stop};

/// The deployment's routes file with its hosts replaced by this machine's ports.
fn routes(name: &str, hosts: &[(&str, String)], dir: &Path) -> std::path::PathBuf {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config");
    let mut text = std::fs::read_to_string(deploy.join(name)).unwrap();
    for (host, local) in hosts {
        text = text.replace(host, local);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A shop service (`flotilla demo-service NAME`), killed if the test fails; it dies with the
/// test process too.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn shop_service(name: &str, platform: u16) -> (Service, u16) {
    let port = free_port();
    let child = flotilla()
        .args(["demo-service", name])
        .env("FLOTILLA_SERVICE__LISTEN", format!("127.0.0.1:{port}"))
        .env("FLOTILLA_SERVICE__DRAIN_DELAY", "0s")
        .env(
            "FLOTILLA_PLATFORM__URL",
            format!("http://127.0.0.1:{platform}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Service(child), port)
}

/// Removes what the test created on PostgreSQL and NATS, passed or failed.
struct Cleanup {
    pg: String,
    schemas: [String; 2],
    nats: String,
    stream: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for schema in &self.schemas {
            support::drop_schema(&self.pg, schema);
        }
        use std::io::{BufRead, BufReader, Write};
        let request = format!(
            "CONNECT {{\"verbose\":false}}\r\nPUB $JS.API.STREAM.DELETE.{} 0\r\n\r\nPING\r\n",
            self.stream
        );
        if let Ok(mut conn) = std::net::TcpStream::connect(self.nats.trim_start_matches("nats://"))
            && conn.write_all(request.as_bytes()).is_ok()
        {
            let _ = BufReader::new(conn)
                .lines()
                .map_while(Result::ok)
                .any(|l| l == "PONG");
        }
    }
}

struct Platform {
    registries: [Up; 2],
    bus: Up,
    store: Up,
    platform_api: Up,
    gateway: Up,
}

fn start_platform(dir: &Path, pg: &str, nats: &str, cleanup: &Cleanup) -> Platform {
    let empty = dir.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let registry = |node: &str| {
        let env = [
            ("FLOTILLA_REGISTRY__CATALOG__KIND", "postgres"),
            ("FLOTILLA_REGISTRY__CATALOG__URL", pg),
            (
                "FLOTILLA_REGISTRY__CATALOG__SCHEMA",
                cleanup.schemas[0].as_str(),
            ),
            ("FLOTILLA_REGISTRY__NODE_NAME", node),
        ];
        start_role("registry", &dir.join(node), &empty, &env)
    };
    let registries = [registry("registry-1"), registry("registry-2")];
    let bus_env = [
        ("FLOTILLA_BUS__KIND", "nats"),
        ("FLOTILLA_BUS__URL", nats),
        ("FLOTILLA_BUS__PREFIX", cleanup.stream.as_str()),
    ];
    let bus = start_role("bus", &dir.join("bus"), &empty, &bus_env);
    let store_env = [
        ("FLOTILLA_EVENTSTORE__KIND", "postgres"),
        ("FLOTILLA_EVENTSTORE__URL", pg),
        ("FLOTILLA_EVENTSTORE__SCHEMA", cleanup.schemas[1].as_str()),
    ];
    let store = start_role("store", &dir.join("store"), &empty, &store_env);
    let local = |up: &Up| format!("http://127.0.0.1:{}", up.api);
    let both = format!("{}\", \"{}", local(&registries[0]), local(&registries[1]));
    let hosts = [
        ("http://registry:4400", both),
        ("http://bus:4400", local(&bus)),
        ("http://store:4400", local(&store)),
    ];
    let api_routes = routes("platform-api.routes.toml", &hosts, dir);
    let platform_api = start_role("gateway", &dir.join("platform-api"), &api_routes, &[]);
    let shop_routes = routes("shop.routes.toml", &[], dir);
    let discovery = format!("{},{}", local(&registries[1]), local(&registries[0]));
    let gateway_env = [("FLOTILLA_DISCOVERY__REGISTRY_URL", discovery.as_str())];
    let gateway = start_role("gateway", &dir.join("gateway"), &shop_routes, &gateway_env);
    Platform {
        registries,
        bus,
        store,
        platform_api,
        gateway,
    }
}

#[test]
fn an_order_through_the_split_platform_is_confirmed_by_its_saga() {
    let suite = "the split platform (PostgreSQL and NATS)";
    let (Some(pg), Some(nats)) = (
        backend(Backend::Postgres, suite),
        backend(Backend::Nats, suite),
    ) else {
        return;
    };
    let cleanup = Cleanup {
        pg: pg.clone(),
        schemas: [unique_name("split_reg"), unique_name("split_es")],
        nats: nats.clone(),
        stream: unique_name("split_bus"),
    };
    let dir = tempfile::tempdir().unwrap();
    let platform = start_platform(dir.path(), &pg, &nats, &cleanup);
    let services: Vec<(Service, u16)> = ["users", "orders", "inventory", "payments"]
        .into_iter()
        .map(|name| shop_service(name, platform.platform_api.gateway))
        .collect();
    for (_, port) in &services {
        eventually("a shop service is ready", PATIENCE, || {
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok()
                && http(*port, "GET", "/ready", "").0 == 200
        });
    }
    let gw = platform.gateway.gateway;
    eventually("the gateway routes to the inventory", PATIENCE, || {
        call(gw, "GET", "/api/products", None).0 == 200
    });
    let user = json!({"name": "Ada", "email": "ada@example.com"});
    let (status, user) = call(gw, "POST", "/api/users", Some(user));
    assert_eq!(status, 201, "{user}");
    let product = json!({"sku": "mug", "name": "Mug", "price": 1200, "stock": 10});
    let (status, body) = call(gw, "POST", "/api/products", Some(product));
    assert_eq!(status, 201, "{body}");
    let order = json!({"user_id": user["id"], "items": [{"sku": "mug", "quantity": 2}]});
    let (status, order) = call(gw, "POST", "/api/orders", Some(order));
    assert_eq!(status, 202, "{order}");
    let path = format!("/api/orders/{}", order["id"].as_str().unwrap());
    let mut last = json!(null);
    eventually("the order's saga ends", PATIENCE, || {
        last = call(gw, "GET", &path, None).1;
        last["status"] != "pending"
    });
    assert_eq!(last["status"], "confirmed", "{last}");
    let (_, mug) = call(gw, "GET", "/api/products/mug", None);
    assert_eq!(
        (mug["available"].as_i64(), mug["reserved"].as_i64()),
        (Some(8), Some(2))
    );

    drop(services);
    let Platform {
        registries,
        bus,
        store,
        platform_api,
        gateway,
    } = platform;
    for up in [gateway, platform_api, bus, store] {
        stop(up);
    }
    for up in registries {
        stop(up);
    }
}
