#!/usr/bin/env bash
# Embedded event-bus figures (docs/BENCHMARKS.md, "Event bus"): durable publish throughput
# with concurrent publishers and publish-to-handler latency through the delivery engine.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo bench -p flotilla-sqlite --features bus --bench bus_throughput
