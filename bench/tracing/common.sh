# What the tracing benches (run.sh, profile.sh, instructions.sh) share, sourced after each has
# set P_UP, P_SINK and P_SRV: the release examples, a scratch directory cleaned up on exit with
# every process started through `spawn`, the OTLP collector stand-in, the trivial upstream and
# the gateway configuration that proxies to it. PIN, when set, prefixes the helper processes
# (e.g. `taskset -c 1`).

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/flotilla/target}
examples=$CARGO_TARGET_DIR/release/examples
hello=$examples/hello
gateway=$examples/bench_gateway
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

build_examples() {
  [ -n "${SKIP_BUILD:-}" ] && return
  cargo build --release -q -p flotilla --example hello
  cargo build --release -q -p flotilla-gateway --example bench_gateway
}

spawn() { "$@" & pids+=($!); }

# A collector stand-in that answers every export with 200 and an empty body.
start_sink() { spawn ${PIN:-} python3 "$(dirname "${BASH_SOURCE[0]}")/otlp_sink.py" "$P_SINK"; }

# The trivial upstream, and $work/gateway.toml routing every path to it.
start_upstream() {
  spawn ${PIN:-} "$gateway" upstream "127.0.0.1:$P_UP"
  cat >"$work/gateway.toml" <<CONF
[server]
max_connections = 4096
[[upstreams]]
name = "up"
urls = ["http://127.0.0.1:$P_UP"]
[[routes]]
name = "all"
prefix = "/"
upstream = "up"
CONF
}

# Waits until something listens on $P_SRV.
wait_for_server() {
  for _ in $(seq "${1:-50}"); do (exec 3<>/dev/tcp/127.0.0.1/$P_SRV) 2>/dev/null && return; sleep 0.2; done
}

# Instructions per request of a server under callgrind: starts `command...` (with the
# environment changes in the array `cg_env`, given to `env`, when set), takes a 5 s warm-up from wrk on PATH, zeroes the counters,
# serves wrk for $duration seconds (8 connections) and dumps them; prints
# "instructions_per_request requests_counted". Every thread of the process is counted.
cg_env=()
count_instructions() { # PATH command...
  local path=$1; shift
  env "${cg_env[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "$@" 2>/dev/null &
  local pid=$!
  wait_for_server 150
  wrk -t1 -c8 -d5s "http://127.0.0.1:$P_SRV$path" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  local out reqs ir
  out=$(wrk -t1 -c8 -d"${duration}s" "http://127.0.0.1:$P_SRV$path")
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$work/cg.$pid.1")
  awk -v a="$ir" -v b="$reqs" 'BEGIN {printf "%.0f %d\n", a / b, b}'
}
