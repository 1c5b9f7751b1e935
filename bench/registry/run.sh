#!/usr/bin/env bash
# Registry benchmarks: discover req/s over HTTP (wrk and an in-process load loop), resolve
# latency from the client cache, watcher fan-out for 1,000 and 10,000 watchers, and the CPU to
# health-check 5,000 instances at a 1 s interval. Results go in docs/BENCHMARKS.md ("Registry").
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/flotilla/target}"
cargo bench -p flotilla-registry --bench registry --no-run
BIN=$(ls -t "$CARGO_TARGET_DIR"/release/deps/registry-* | grep -v '\.d$' | head -1)

if command -v wrk >/dev/null; then
  "$BIN" serve 10 &
  SERVER=$!
  trap 'kill $SERVER 2>/dev/null || true' EXIT
  for _ in $(seq 50); do curl -sf http://127.0.0.1:4481/api/v1/registry/services/users >/dev/null && break; sleep 0.1; done
  echo "== wrk: GET /api/v1/registry/services/users (10 instances)"
  wrk -t2 -c64 -d10s http://127.0.0.1:4481/api/v1/registry/services/users
  echo "== wrk: GET /v1/health/service/users?passing (Consul shape)"
  wrk -t2 -c64 -d10s 'http://127.0.0.1:4481/v1/health/service/users?passing'
  kill $SERVER; wait $SERVER 2>/dev/null || true
  trap - EXIT
else
  echo "wrk not installed (apt-get install wrk); skipping the wrk runs"
fi

"$BIN" discover
"$BIN" resolve
"$BIN" fanout 1000
"$BIN" fanout 10000
"$BIN" fanout-http 1000
"$BIN" fanout-http 5000
"$BIN" checks 5000
