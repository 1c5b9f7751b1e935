//! `flotilla up --demo` end to end: the shop's four services run as supervised child processes
//! that register like any service, a dead one is started again, products are seeded once (a
//! second run on the same data keeps the first run's data), the load generator and `routes`
//! work against it, and Ctrl-C leaves no child behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod demo_support;
mod support;

use std::process::Output;

use demo_support::{Demo, PATIENCE, call, is_demo_service, signal};
use serde_json::{Value, json};
use support::{eventually, flotilla};

fn admin(demo: &Demo, args: &[&str]) -> Output {
    flotilla()
        .args(args)
        .args(["--url", &demo.url()])
        .output()
        .unwrap()
}

fn admin_json(demo: &Demo, args: &[&str]) -> Value {
    let out = admin(demo, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

fn passing(demo: &Demo, service: &str) -> bool {
    let out = admin(demo, &["services", "show", service, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["instances"]
        .as_array()
        .is_some_and(|i| i.iter().any(|i| i["status"] == "passing"))
}

fn names(services: &[(String, u32)]) -> Vec<String> {
    let mut names: Vec<String> = services.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names
}

#[test]
fn up_demo_runs_the_shop_as_supervised_registered_services_and_ctrl_c_stops_them_all() {
    let data = tempfile::tempdir().unwrap();
    // `[shop]` settings reach the services (and are no setting of the platform's).
    let decline_all = [("FLOTILLA_SHOP__PAYMENT_FAILURE_RATE", "1")];
    let demo = Demo::start(data.path(), &decline_all);
    for wanted in [demo.gateway_url(), format!("{}/ui/", demo.url())] {
        assert!(demo.banner.contains(&wanted), "{}", demo.banner);
    }
    assert!(demo.banner.contains("export TOKEN=ey"), "{}", demo.banner);

    let services = demo.services();
    assert_eq!(
        names(&services),
        ["inventory", "orders", "payments", "users"]
    );
    for name in ["users", "orders", "inventory", "payments"] {
        eventually(&format!("{name} registered and passing"), PATIENCE, || {
            passing(&demo, name)
        });
    }
    let (status, products) = call(demo.gateway, "GET", "/api/products", None);
    assert_eq!(status, 200, "{products}");
    let skus: Vec<&str> = products
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["sku"].as_str())
        .collect();
    assert!(
        skus.contains(&"mug") && skus.contains(&"espresso-machine"),
        "{products}"
    );

    // A few seconds of load: every request answered as the mix expects; with every charge
    // declined, no order is confirmed.
    let out = flotilla()
        .args(["demo", "load", "--gateway", &demo.gateway_url()])
        .args(["--rate", "10", "--duration", "5s", "--json"])
        .output()
        .unwrap();
    support::assert_success(&out);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["requests"].as_u64() > Some(0), "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    let orders = &summary["orders"];
    let settled = ["confirmed", "cancelled", "pending"]
        .iter()
        .map(|k| orders[*k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(orders["placed"].as_u64(), Some(settled), "{summary}");
    assert!(orders["placed"].as_u64() > Some(0), "{summary}");
    assert_eq!(orders["confirmed"], 0, "{summary}");

    // The gateway's routes, with their upstream's breakers.
    let routes = admin_json(&demo, &["routes", "ls", "--window", "200ms", "--json"]);
    let read = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "products-read")
        .cloned()
        .expect("the shop's products-read route");
    assert!(read["requests_per_second"].is_number(), "{read}");
    assert_eq!(read["instances"][0]["breaker"], "closed", "{read}");

    // A service that dies is started again, as a new process, and registers again.
    let (_, payments) = services
        .iter()
        .find(|(n, _)| n == "payments")
        .unwrap()
        .clone();
    signal("-KILL", payments);
    eventually("payments restarted", PATIENCE, || {
        demo.services()
            .iter()
            .any(|(n, pid)| n == "payments" && *pid != payments)
    });
    eventually("the new payments passing", PATIENCE, || {
        passing(&demo, "payments")
    });

    let children: Vec<u32> = demo.services().into_iter().map(|(_, pid)| pid).collect();
    assert_eq!(children.len(), 4);
    let status = demo.interrupt();
    assert_eq!(status.code(), Some(0), "Ctrl-C is a clean stop");
    for pid in children {
        assert!(!is_demo_service(pid), "demo service {pid} outlived `up`");
    }
}

#[test]
fn a_second_run_on_the_same_data_keeps_the_first_runs_users_orders_and_stock() {
    let data = tempfile::tempdir().unwrap();
    let demo = Demo::start(data.path(), &[]);
    let ada = json!({ "name": "Ada", "email": "ada@example.com" });
    let (status, user) = call(demo.gateway, "POST", "/api/users", Some(ada));
    assert_eq!(status, 201, "{user}");
    let user = user["id"].as_str().unwrap().to_owned();
    let order = json!({ "user_id": user, "items": [{ "sku": "mug", "quantity": 2 }] });
    let (status, order) = call(demo.gateway, "POST", "/api/orders", Some(order));
    assert_eq!(status, 202, "{order}");
    let order = format!("/api/orders/{}", order["id"].as_str().unwrap());
    eventually("the order confirmed", PATIENCE, || {
        call(demo.gateway, "GET", &order, None).1["status"] == "confirmed"
    });
    assert_eq!(demo.interrupt().code(), Some(0));

    let again = Demo::start(data.path(), &[]);
    let (status, read) = call(again.gateway, "GET", &format!("/api/users/{user}"), None);
    assert_eq!(
        (status, read["email"].clone()),
        (200, json!("ada@example.com"))
    );
    assert_eq!(
        call(again.gateway, "GET", &order, None).1["status"],
        "confirmed"
    );
    // Seeding found the products there (409) and left their stock alone.
    let inventory = again.ports[2];
    let (_, mug) = call(inventory, "GET", "/products/mug", None);
    assert_eq!(
        (mug["available"].clone(), mug["reserved"].clone()),
        (json!(98), json!(2)),
        "{mug}"
    );
    assert_eq!(again.interrupt().code(), Some(0));
}

#[test]
fn a_taken_demo_port_is_refused_naming_it_and_its_service() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let free = support::free_port;
    let ports = format!("{},{},{port},{}", free(), free(), free());
    let out = flotilla()
        .args(["up", "--demo", "--demo-ports", &ports])
        .env("FLOTILLA_STORAGE__DATA_DIR", data.path())
        .env("FLOTILLA_SERVER__LISTEN", format!("127.0.0.1:{}", free()))
        .env("FLOTILLA_GATEWAY__LISTEN", format!("127.0.0.1:{}", free()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port}")) && stderr.contains("inventory"),
        "{stderr}"
    );
}

#[test]
fn without_demo_up_starts_nothing_but_the_platform() {
    let data = tempfile::tempdir().unwrap();
    let routes = data.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    let up = support::start(data.path(), &routes);
    let ls = support::cli(&up, &["services", "ls", "--json"]);
    assert!(!ls.contains("\"users\""), "{ls}");
    assert!(demo_support::children(up.child.id()).is_empty());
    support::stop(up);
}
