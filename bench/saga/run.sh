#!/usr/bin/env bash
# Saga figures (docs/BENCHMARKS.md, "Sagas"): completed three-step sagas per second and p99
# start-to-end latency on the embedded SQLite store and on PostgreSQL, next to the raw event
# store appending the same number of events in the same run.
#   bench/saga/run.sh [sqlite|postgres|all] [--sagas N] [--concurrency C] [--http]
# PostgreSQL is FLOTILLA_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo run --release -q -p flotilla-saga --example saga_bench -- "$@"
