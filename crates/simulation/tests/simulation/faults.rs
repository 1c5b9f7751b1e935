//! Fault schedules drawn from a seed, and the loop that steps a simulation through one.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// One change to the simulated network or its hosts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    /// Drop every message between the two hosts (a black-hole partition).
    Partition(&'static str, &'static str),
    /// Hold every message between the two hosts (a long delay) until released.
    Hold(&'static str, &'static str),
    /// Both directions healthy again; held messages delivered.
    Heal(&'static str, &'static str),
    /// Stop the host's software (a crash: its tasks and sockets are gone).
    Crash(&'static str),
    /// Start the host's software again (after a crash, or a restart of a running host).
    Bounce(&'static str),
}

/// What a scenario's network looks like.
pub(crate) struct Topology {
    /// The server every client talks to.
    pub(crate) server: &'static str,
    /// The hosts that talk to it.
    pub(crate) clients: Vec<&'static str>,
    /// The clients that may be restarted (hosts, not turmoil clients).
    pub(crate) restartable: Vec<&'static str>,
}

/// A seeded simulation builder: latencies, random link failures, and a fixed epoch.
pub(crate) fn builder(seed: u64, rng: &mut StdRng) -> turmoil::Builder {
    let mut b = turmoil::Builder::new();
    let max_latency = rng.random_range(1..=60);
    b.rng_seed(seed)
        .epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        .simulation_duration(Duration::from_secs(3600))
        .tick_duration(Duration::from_millis(10))
        .min_message_latency(Duration::from_millis(rng.random_range(0..=max_latency / 2)))
        .max_message_latency(Duration::from_millis(max_latency))
        // Occasional random link failures on top of the scheduled faults.
        .fail_rate(rng.random_range(0.0..0.002))
        .repair_rate(0.05);
    b
}

/// The seed's own generator for everything the scenario draws.
pub(crate) fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x5eed_f1a7_0111_a000)
}

/// Between 2 and 8 faults placed in `window`, each lasting 0.2 to 8 s.
pub(crate) fn schedule(
    rng: &mut StdRng,
    net: &Topology,
    window: Duration,
) -> Vec<(Duration, Action)> {
    let mut plan = Vec::new();
    for _ in 0..rng.random_range(2..=8) {
        let at = Duration::from_millis(rng.random_range(0..window.as_millis() as u64));
        let end = at + Duration::from_millis(rng.random_range(200..8_000));
        let peer = net.clients[rng.random_range(0..net.clients.len())];
        match rng.random_range(0..4) {
            0 => plan.extend([
                (at, Action::Partition(net.server, peer)),
                (end, Action::Heal(net.server, peer)),
            ]),
            1 => plan.extend([
                (at, Action::Hold(net.server, peer)),
                (end, Action::Heal(net.server, peer)),
            ]),
            2 => plan.extend([
                (at, Action::Crash(net.server)),
                (end, Action::Bounce(net.server)),
            ]),
            _ if !net.restartable.is_empty() => {
                let host = net.restartable[rng.random_range(0..net.restartable.len())];
                plan.push((at, Action::Bounce(host)));
            }
            _ => plan.push((at, Action::Bounce(net.server))),
        }
    }
    plan.sort_by_key(|(at, _)| *at);
    plan
}

/// Applies one action.
pub(crate) fn apply(sim: &mut turmoil::Sim<'_>, action: Action) {
    match action {
        Action::Partition(a, b) => sim.partition(a, b),
        Action::Hold(a, b) => sim.hold(a, b),
        Action::Heal(a, b) => {
            sim.repair(a, b);
            sim.release(a, b);
        }
        Action::Crash(host) => sim.crash(host),
        Action::Bounce(host) => sim.bounce(host),
    }
}

/// Every link healthy, random failures off, every crashed host started again.
pub(crate) fn heal_all(sim: &mut turmoil::Sim<'_>, net: &Topology) {
    sim.set_fail_rate(0.0);
    for peer in &net.clients {
        apply(sim, Action::Heal(net.server, peer));
    }
    if !sim.is_host_running(net.server) {
        sim.bounce(net.server);
    }
}

/// Steps through `plan` (faults at their simulated times), heals everything at the end of
/// `window`, then steps until `settled()` holds or `bound` more simulated time has passed.
/// Answers the simulated time it took to settle after the heal.
pub(crate) fn drive(
    sim: &mut turmoil::Sim<'_>,
    net: &Topology,
    plan: Vec<(Duration, Action)>,
    window: Duration,
    bound: Duration,
    mut settled: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let mut pending = plan.into_iter().peekable();
    let step = |sim: &mut turmoil::Sim<'_>| sim.step().map(drop).map_err(|e| e.to_string());
    while sim.elapsed() < window {
        while let Some((_, action)) = pending.next_if(|(at, _)| *at <= sim.elapsed()) {
            apply(sim, action);
        }
        step(sim)?;
    }
    heal_all(sim, net);
    let healed = sim.elapsed();
    while !settled() {
        if sim.elapsed() - healed > bound {
            return Err(format!(
                "not settled {bound:?} (simulated) after every fault healed"
            ));
        }
        step(sim)?;
    }
    Ok(sim.elapsed() - healed)
}
