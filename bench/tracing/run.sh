#!/usr/bin/env bash
# The cost of span export: server CPU time per request of the SDK's hello route
# (`hello sdk`, as bench/sdk/run.sh) and of the gateway (`bench_gateway serve`, as
# bench/gateway/run.sh), with export off and with export on at a 10 % sample ratio
# (parent-based, so 10 % of the requests, which arrive without a trace, are recorded) to a
# local OTLP/HTTP sink that answers every export. Same machine, same load, same run; the
# server is pinned to CPU 0, wrk, the gateway's upstream and the sink to CPU 1; off and on
# alternate ROUNDS times and the medians are reported.
#
#   bench/tracing/run.sh [DURATION_SECONDS] [CONNECTIONS] [ROUNDS] [SAMPLE_RATIO]
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-10}
conns=${2:-64}
rounds=${3:-3}
ratio=${4:-0.1}
P_UP=19080 P_SINK=19081 P_SRV=19082

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
PIN="taskset -c 1"
. "$(dirname "$0")/common.sh"
build_examples
start_sink
start_upstream

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

measure() { # off|on path command... -> "rps cpu_us_per_request"
  local mode=$1 path=$2; shift 2
  if [ "$mode" = on ]; then
    env OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$P_SINK" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
      OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG="$ratio" \
      taskset -c 0 "$@" &
  else
    taskset -c 0 "$@" &
  fi
  local pid=$!
  wait_for_server
  taskset -c 1 wrk -t1 -c"$conns" -d2s "http://127.0.0.1:$P_SRV$path" >/dev/null # warm-up
  local out t0 t1
  t0=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" "http://127.0.0.1:$P_SRV$path")
  t1=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local rps reqs
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v a="$t0" -v b="$t1" -v n="$reqs" -v r="$rps" 'BEGIN {printf "%s %.2f\n", r, (b - a) * 10000 / n}'
}

report() { # name
  local name=$1 off_cpu on_cpu off_rps on_rps
  off_cpu=$(printf '%s\n' "${cpu_off[@]}" | median); on_cpu=$(printf '%s\n' "${cpu_on[@]}" | median)
  off_rps=$(printf '%s\n' "${rps_off[@]}" | median); on_rps=$(printf '%s\n' "${rps_on[@]}" | median)
  awk -v n="$name" -v a="$off_cpu" -v b="$on_cpu" -v r="$off_rps" -v s="$on_rps" \
    'BEGIN {printf "| %s | %s | %s | %.3f | %s | %s |\n", n, a, b, b / a, r, s}'
}

rows=()
for target in sdk gateway; do
  cpu_off=(); cpu_on=(); rps_off=(); rps_on=()
  for r in $(seq "$rounds"); do
    for mode in off on; do
      if [ "$target" = sdk ]; then
        read -r rps cpu < <(measure "$mode" /hello "$hello" sdk "127.0.0.1:$P_SRV")
      else
        read -r rps cpu < <(measure "$mode" /x "$gateway" serve "$work/gateway.toml" "127.0.0.1:$P_SRV")
      fi
      if [ "$mode" = off ]; then cpu_off+=("$cpu"); rps_off+=("$rps"); else cpu_on+=("$cpu"); rps_on+=("$rps"); fi
      echo "$target round $r tracing $mode: $rps req/s, $cpu us-cpu/req" >&2
    done
  done
  rows+=("$(report "$target")")
done
echo
echo "| server | CPU µs/req, export off | CPU µs/req, export on ($ratio sampled) | ratio on/off | req/s off | req/s on |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
