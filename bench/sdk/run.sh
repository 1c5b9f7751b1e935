#!/usr/bin/env bash
# SDK overhead: server CPU time per request, requests/s and p99 latency of a hello route served
# by a full `Microservice` versus the same route on bare axum, same machine, same load
# generator, same run. CPU per request (utime+stime of the server process over the requests it
# served) is the figure that stays meaningful on a busy machine; req/s and p99 move with load.
# The server is pinned to CPU 0 and wrk to CPU 1; the two servers alternate ROUNDS times and
# the median of each is reported.
#
# Second part, the client: a `ServiceClient` (full default policy stack) and a bare hyper-util
# client each call the bare axum server running in another process (server on CPU 0, client on
# CPU 1, CONNECTIONS calls in flight from one worker thread), alternating ROUNDS times;
# requests/s and the client's CPU per request, medians and ratio. BEFORE_CLIENT_BIN=<another
# build of the bench_client example> adds that build's ServiceClient to each client round.
#
# With BEFORE_BIN=<another build of the hello example> (e.g. copied aside before a change), each
# round also serves the route through that build's `Microservice`, so a change is measured
# before/after in the same run. SKIP_CLIENT=1 runs the first part only.
#
#   bench/sdk/run.sh [DURATION_SECONDS] [CONNECTIONS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-10}
conns=${2:-64}
rounds=${3:-3}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/flotilla/target}
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -q -p flotilla --example hello
  [ -n "${SKIP_CLIENT:-}" ] || cargo build --release -q -p flotilla-client --example bench_client
fi
bin=$CARGO_TARGET_DIR/release/examples/hello
client_bin=$CARGO_TARGET_DIR/release/examples/bench_client
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

measure() { # mode port [binary] -> "rps p99_ms cpu_us_per_request"
  taskset -c 0 "${3:-$bin}" "$1" "127.0.0.1:$2" &
  local pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$2) 2>/dev/null && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c"$conns" -d2s "http://127.0.0.1:$2/hello" >/dev/null # warm-up
  local out t0 t1
  t0=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$2/hello")
  t1=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local rps p99 reqs cpu
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(awk -v a="$t0" -v b="$t1" -v n="$reqs" 'BEGIN {printf "%.2f", (b - a) * 10000 / n}')
  echo "$rps $p99 $cpu"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

bare_rps=(); bare_p99=(); bare_cpu=(); sdk_rps=(); sdk_p99=(); sdk_cpu=(); before_cpu=()
for r in $(seq "$rounds"); do
  read -r rps p99 cpu < <(measure bare 9101); bare_rps+=("$rps"); bare_p99+=("$p99"); bare_cpu+=("$cpu")
  read -r rps p99 cpu < <(measure sdk 9102); sdk_rps+=("$rps"); sdk_p99+=("$p99"); sdk_cpu+=("$cpu")
  echo "round $r: bare ${bare_rps[-1]} req/s p99 ${bare_p99[-1]} ms ${bare_cpu[-1]} us-cpu/req | sdk ${sdk_rps[-1]} req/s p99 ${sdk_p99[-1]} ms ${sdk_cpu[-1]} us-cpu/req"
  if [ -n "${BEFORE_BIN:-}" ]; then
    read -r rps p99 cpu < <(measure sdk 9104 "$BEFORE_BIN"); before_cpu+=("$cpu")
    echo "round $r: sdk before ($BEFORE_BIN) $rps req/s p99 $p99 ms $cpu us-cpu/req"
  fi
done
bc=$(printf '%s\n' "${bare_cpu[@]}" | median); sc=$(printf '%s\n' "${sdk_cpu[@]}" | median)
br=$(printf '%s\n' "${bare_rps[@]}" | median); bp=$(printf '%s\n' "${bare_p99[@]}" | median)
sr=$(printf '%s\n' "${sdk_rps[@]}" | median); sp=$(printf '%s\n' "${sdk_p99[@]}" | median)
echo
echo "| server | CPU µs/request (median) | req/s (median) | p99 ms (median) |"
echo "|---|---|---|---|"
echo "| bare axum | $bc | $br | $bp |"
echo "| Microservice | $sc | $sr | $sp |"
awk -v c="$sc" -v bc="$bc" -v s="$sr" -v b="$br" -v sp="$sp" -v bp="$bp" \
  'BEGIN {printf "| ratio (SDK / bare) | %.2f | %.3f | %.2f |\n", c/bc, s/b, sp/bp}'
if [ -n "${BEFORE_BIN:-}" ]; then
  oc=$(printf '%s\n' "${before_cpu[@]}" | median)
  awk -v o="$oc" -v c="$sc" -v bc="$bc" \
    'BEGIN {printf "before: %s us-cpu/req, ratio to bare %.2f; after / before %.2f\n", o, o/bc, c/o}'
fi
[ -n "${SKIP_CLIENT:-}" ] && { echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"; exit 0; }

# ---- the client against a server in another process ---------------------------------------
taskset -c 0 "$bin" bare 127.0.0.1:9103 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/9103) 2>/dev/null && break; sleep 0.1; done
c_bare=(); c_bare_cpu=(); c_sdk=(); c_sdk_cpu=(); c_before=(); c_before_cpu=()
for r in $(seq "$rounds"); do
  read -r rps cpu < <(taskset -c 1 "$client_bin" bare 127.0.0.1:9103 /hello "$duration" "$conns")
  c_bare+=("$rps"); c_bare_cpu+=("$cpu")
  read -r rps cpu < <(taskset -c 1 "$client_bin" sdk 127.0.0.1:9103 /hello "$duration" "$conns")
  c_sdk+=("$rps"); c_sdk_cpu+=("$cpu")
  echo "client round $r: bare hyper-util ${c_bare[-1]} req/s ${c_bare_cpu[-1]} us-cpu/req | ServiceClient ${c_sdk[-1]} req/s ${c_sdk_cpu[-1]} us-cpu/req"
  if [ -n "${BEFORE_CLIENT_BIN:-}" ]; then
    read -r rps cpu < <(taskset -c 1 "$BEFORE_CLIENT_BIN" sdk 127.0.0.1:9103 /hello "$duration" "$conns")
    c_before+=("$rps"); c_before_cpu+=("$cpu")
    echo "client round $r: ServiceClient before ($BEFORE_CLIENT_BIN) $rps req/s $cpu us-cpu/req"
  fi
done
kill "$server"; wait "$server" 2>/dev/null || true
cbr=$(printf '%s\n' "${c_bare[@]}" | median); cbc=$(printf '%s\n' "${c_bare_cpu[@]}" | median)
csr=$(printf '%s\n' "${c_sdk[@]}" | median); csc=$(printf '%s\n' "${c_sdk_cpu[@]}" | median)
echo
echo "| client (server in another process) | req/s (median) | client CPU µs/request (median) |"
echo "|---|---|---|"
echo "| bare hyper-util | $cbr | $cbc |"
echo "| ServiceClient | $csr | $csc |"
awk -v s="$csr" -v b="$cbr" -v sc="$csc" -v bc="$cbc" \
  'BEGIN {printf "| ratio (ServiceClient / bare) | %.3f | %.2f |\n", s/b, sc/bc}'
if [ -n "${BEFORE_CLIENT_BIN:-}" ]; then
  cor=$(printf '%s\n' "${c_before[@]}" | median); coc=$(printf '%s\n' "${c_before_cpu[@]}" | median)
  echo "| ServiceClient before | $cor | $coc |"
  awk -v o="$cor" -v b="$cbr" -v oc="$coc" -v bc="$cbc" -v s="$csr" \
    'BEGIN {printf "| ratio (before / bare) | %.3f | %.2f |\nafter / before req/s: %.2f\n", o/b, oc/bc, s/o}'
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
