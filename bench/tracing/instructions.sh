#!/usr/bin/env bash
# The cost of span export counted in instructions rather than timed: each server (the SDK's
# `hello sdk`, the gateway's `bench_gateway serve`) runs under callgrind with export off and on
# (10 % sampled, as bench/tracing/run.sh), takes a 5 s warm-up from wrk, has its counters
# zeroed, serves wrk for DURATION seconds (8 connections), and has its counters dumped; the
# figure is instructions per request over that window, every thread of the process included
# (the exporter's too). Counts do not move with the machine's load, which wall-clock CPU time
# on a shared virtual machine does by ±15 % between identical rounds.
#
#   bench/tracing/instructions.sh [DURATION_SECONDS] [SAMPLE_RATIO]
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-30}
ratio=${2:-0.1}
P_UP=19080 P_SINK=19081 P_SRV=19082

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
. "$(dirname "$0")/common.sh"
build_examples
start_sink
start_upstream

count() { # off|on path command... -> instructions per request
  local mode=$1 path=$2; shift 2
  cg_env=()
  [ "$mode" = on ] && cg_env=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$P_SINK"
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_TRACES_SAMPLER=parentbased_traceidratio
    OTEL_TRACES_SAMPLER_ARG="$ratio")
  count_instructions "$path" "$@" | cut -d' ' -f1
}

echo "| server | instructions/request, export off | export on ($ratio sampled) | ratio on/off |"
echo "|---|---|---|---|"
for target in sdk gateway; do
  if [ "$target" = sdk ]; then
    cmd=("$hello" sdk "127.0.0.1:$P_SRV"); path=/hello
  else
    cmd=("$gateway" serve "$work/gateway.toml" "127.0.0.1:$P_SRV" current); path=/x
  fi
  off=$(count off "$path" "${cmd[@]}")
  on=$(count on "$path" "${cmd[@]}")
  awk -v n="$target" -v a="$off" -v b="$on" 'BEGIN {printf "| %s | %d | %d | %.3f |\n", n, a, b, b / a}'
done
