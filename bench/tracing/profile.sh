#!/usr/bin/env bash
# Where span export's CPU goes: runs the SDK's hello route (`sdk`) or the gateway proxying to
# a trivial upstream (`gateway`) with export on at SAMPLE_RATIO to a local OTLP/HTTP sink,
# drives it with wrk (64 connections), samples the server with `perf record -g` for SECONDS,
# and prints the share of samples in tracing, OpenTelemetry and the span registry, in the
# export threads, and the hottest such symbols. Uses the release examples run.sh builds.
#
#   bench/tracing/profile.sh [sdk|gateway] [SECONDS] [SAMPLE_RATIO]
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${1:-gateway}
seconds=${2:-6}
ratio=${3:-0.1}
P_UP=19180 P_SINK=19181 P_SRV=19182

command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed" >&2; exit 1; }
. "$(dirname "$0")/common.sh"
start_sink

export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$P_SINK" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
export OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG="$ratio"
if [ "$target" = sdk ]; then
  path=/hello
  "$examples/hello" sdk "127.0.0.1:$P_SRV" & server=$!
else
  path=/x
  start_upstream
  "$examples/bench_gateway" serve "$work/gateway.toml" "127.0.0.1:$P_SRV" & server=$!
fi
pids+=("$server")
wait_for_server

wrk -t1 -c64 -d"$((seconds + 4))s" "http://127.0.0.1:$P_SRV$path" >/dev/null & pids+=($!)
sleep 2
perf record -q -F 999 -g -p "$server" -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null
perf report -i "$work/perf.data" --no-children --sort comm,dso,symbol --stdio -g none 2>/dev/null |
  grep '%' | sed 's/  */ /g' >"$work/symbols.txt"
traced='opentelemetry|flotilla_telemetry|sharded_slab|tracing_subscriber|tracing_core|tracing::|rand::|prost'
awk -v re="$traced" '$0 ~ re {gsub("%", "", $1); s += $1} END {printf "tracing, OpenTelemetry, span registry: %.2f %%\n", s}' "$work/symbols.txt"
awk '$2 ~ /flotilla-otlp|OpenTelemetry/ {gsub("%", "", $1); s += $1} END {printf "export threads: %.2f %%\n", s}' "$work/symbols.txt"
echo "hottest:"
grep -E "$traced" "$work/symbols.txt" | head -15
