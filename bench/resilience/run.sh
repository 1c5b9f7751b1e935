#!/usr/bin/env bash
# Runs the resilience benchmarks and prints the per-call overhead and the throughput ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/flotilla/target}"
out=$(cargo bench -p flotilla-client --bench resilience -- --noplot "$@" 2>&1 | tee /dev/stderr)
echo
echo "$out" | grep -E "^(policy_stack|client_throughput)/|time:|thrpt:" || true
