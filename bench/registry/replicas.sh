#!/usr/bin/env bash
# Registry catalog on PostgreSQL (two replicas) against SQLite (one registry), same run: write
# latency and write-to-watcher-woken latency. Needs PostgreSQL on 127.0.0.1:5432 (database
# `test`, as the tests use). Usage: bench/registry/replicas.sh [changes, default 500]. Results
# go in docs/BENCHMARKS.md ("Registry replicas on PostgreSQL").
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/flotilla/target}"
cargo bench -p flotilla-registry --bench replicas -j 2 -- "${1:-500}"
