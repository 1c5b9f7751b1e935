//! Seeded simulation of network faults (tests only, never published).
//!
//! `tests/simulation.rs` runs the real registry client, self-registration agent and platform
//! backend against the real registry, bus and event-store HTTP APIs, each in its own
//! simulated host of a `turmoil` network, under partitions, delays, link failures and
//! restarts chosen from a seed, and checks the invariants docs/RELIABILITY.md states. The
//! library is empty: it exists so the tests have a home that depends on every part without
//! adding an arrow to the layering.
