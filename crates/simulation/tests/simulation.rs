//! Seeded simulation of network faults: the real clients against the real servers, each in
//! its own simulated host, under partitions, delays, link failures and restarts. See the
//! Simulation section of docs/RELIABILITY.md.
//!
//! `SIM_SEED=n` replays one seed, `SIM_SEEDS=n` runs seeds `0..n`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "simulation/faults.rs"]
mod faults;
#[path = "simulation/net.rs"]
mod net;
#[path = "simulation/platform.rs"]
mod platform;
#[path = "simulation/push.rs"]
mod push;
#[path = "simulation/registry.rs"]
mod registry;
#[path = "simulation/saga.rs"]
mod saga;
#[path = "simulation/seeds.rs"]
mod seeds;

#[test]
fn agents_reregister_and_followers_converge_after_any_fault() {
    seeds::run_all(
        "agents_reregister_and_followers_converge_after_any_fault",
        120,
        registry::run,
    );
}

#[test]
fn acknowledged_publishes_and_appends_are_kept_once_under_any_fault() {
    seeds::run_all(
        "acknowledged_publishes_and_appends_are_kept_once_under_any_fault",
        120,
        platform::run,
    );
}

#[test]
fn every_acknowledged_publish_is_pushed_under_any_fault() {
    seeds::run_all(
        "every_acknowledged_publish_is_pushed_under_any_fault",
        60,
        push::run,
    );
}

#[test]
fn every_saga_ends_under_any_fault() {
    seeds::run_all("every_saga_ends_under_any_fault", 40, saga::run);
}
