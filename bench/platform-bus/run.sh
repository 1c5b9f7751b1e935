#!/usr/bin/env bash
# The platform bus (a service's bus over the control plane's HTTP API) against the same
# workload on SQLite in process, same run (docs/BENCHMARKS.md, "Platform bus"): publish
# throughput with the backend's request batching, and publish-to-handler latency at
# 1,000 events/s through the delivery engine.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo bench -p flotilla-platform --features bus --bench platform_bus
