//! Which seeds a run covers, and how a failing one is reported so it can be replayed.
//!
//! `SIM_SEED=n` runs seed `n` alone; `SIM_SEEDS=n` runs seeds `0..n` instead of the default
//! count. A seed fixes the fault schedule and turmoil's network randomness (latencies, link
//! failures); the jitter inside the clients under test is not seeded, so a replay meets the
//! same faults at the same simulated times, not necessarily the same retry instants.

use std::panic::{AssertUnwindSafe, catch_unwind};

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={value:?} is not a whole number"),
    }
}

/// The seeds this run covers.
pub(crate) fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("SIM_SEED") {
        return vec![seed];
    }
    (0..env_u64("SIM_SEEDS").unwrap_or(default_count)).collect()
}

/// Runs `scenario` for every seed; the first failure (an invariant broken, or a panic inside
/// a simulated host) fails the test with the command that replays it.
pub(crate) fn run_all(
    test: &str,
    default_count: u64,
    scenario: impl Fn(u64) -> Result<(), String>,
) {
    // `SIM_LOG=warn` (any tracing filter) shows what the code under test logs, for a replay.
    if let Ok(filter) = std::env::var("SIM_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
    for seed in seeds(default_count) {
        let outcome = catch_unwind(AssertUnwindSafe(|| scenario(seed)))
            .unwrap_or_else(|panic| Err(panic_text(&*panic)));
        if let Err(why) = outcome {
            panic!(
                "seed {seed} failed: {why}\n  replay: SIM_SEED={seed} cargo test -p flotilla-simulation --test simulation {test} -- --nocapture"
            );
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a simulated host panicked");
    format!("panic: {text}")
}
