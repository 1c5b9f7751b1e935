#!/usr/bin/env bash
# The gateway and nginx side by side in front of the same trivial upstream, in the same run.
#
# The proxy under test is pinned to one core (PROXY_CPU), the load generator (wrk) and the
# upstream to the other (LOAD_CPU). For each connection count it measures requests/s, CPU time
# per request of the proxy process (utime+stime deltas from /proc/<pid>/stat), and median and
# p99 latency; "added" latency is the proxy's minus the upstream called directly.
#
# Scenarios: routing + metrics (gateway) vs a plain keep-alive reverse proxy (nginx), then rate
# limiting + JWT (gateway) vs rate limiting (nginx; open-source nginx cannot verify JWTs), then
# a cached route (the gateway's response cache vs nginx's proxy_cache; after the first request
# both answer without the upstream; it sends no Cache-Control, so both are configured to give
# its 200s 60 s of freshness). Last, memory: IDLE (10,000) keep-alive client connections, each
# having made one request, held open and idle against nginx and against the gateway in turn;
# the proxy's proportional set size (Pss: nginx's master and worker summed, the gateway's one
# process) is read before and while they are held.
#
#   bench/gateway/run.sh                 # 10 s per point, 1/64/256 connections
#   DURATION=5 CONNS="1 64" bench/gateway/run.sh
#   SKIP_BUILD=1 bench/gateway/run.sh    # reuse the last release build
#   IDLE=0 bench/gateway/run.sh          # skip the idle-connection memory comparison
#   MAX_HEADERS=50 bench/gateway/run.sh  # server.max_headers for the gateway (see configs.sh)
#   RUNTIME=current bench/gateway/run.sh # the gateway on one current-thread runtime; `multi`:
#                                        # work-stealing with one worker; default `workers`: like
#                                        # `flotilla gateway`, one current-thread runtime per
#                                        # core (one here, pinned) on its own SO_REUSEPORT socket
set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-"1 64 256"}
IDLE=${IDLE:-10000}
RUNTIME=${RUNTIME:-}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/flotilla/target}
OUT=${OUT:-$ROOT/bench/gateway/results.md}
SECRET="bench-secret-bench-secret-bench-secret-0123"
P_UP=18080 P_NGINX=18081 P_GW=18082 P_NGINX_RL=18083 P_GW_JWT=18084 P_NGINX_C=18085 P_GW_C=18086

need() { # command package
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2 from Debian's packages" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2") >/dev/null \
    || { echo "cannot install $2; install it and rerun" >&2; exit 1; }
}
need nginx nginx
need wrk wrk
need taskset util-linux

[ -n "${SKIP_BUILD:-}${BIN:-}" ] || cargo build --release -q -p flotilla-gateway --example bench_gateway
BIN=${BIN:-$CARGO_TARGET_DIR/release/examples/bench_gateway}
WORK=$(mktemp -d)
# nginx's workers (not root) must reach the proxy_cache directory.
chmod 711 "$WORK" && mkdir -m 777 "$WORK/ncache"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- configurations ----------------------------------------------------------------------
# shellcheck source=bench/gateway/configs.sh
. "$(dirname "$0")/configs.sh"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 12000; }
http {
  access_log off;
  client_body_temp_path $WORK/body; proxy_temp_path $WORK/proxy;
  fastcgi_temp_path $WORK/fcgi; uwsgi_temp_path $WORK/uwsgi; scgi_temp_path $WORK/scgi;
$(nginx_proxy_settings)
  limit_req_zone \$binary_remote_addr zone=perip:10m rate=1000000r/s;
  server { listen 127.0.0.1:$P_NGINX; location / { proxy_pass http://up; } }
  server {
    listen 127.0.0.1:$P_NGINX_RL;
    location / { limit_req zone=perip burst=1000000 nodelay; proxy_pass http://up; }
  }
  proxy_cache_path $WORK/ncache keys_zone=bench:10m;
  server {
    listen 127.0.0.1:$P_NGINX_C;
    location / { proxy_cache bench; proxy_cache_valid 200 60s; proxy_cache_lock on; proxy_pass http://up; }
  }
}
EOF

write_gateway_configs

# ---- processes ---------------------------------------------------------------------------
taskset -c "$LOAD_CPU" "$BIN" upstream 127.0.0.1:$P_UP & PIDS+=($!)
taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx.conf" -p "$WORK"
taskset -c "$PROXY_CPU" "$BIN" serve "$WORK/gateway.toml" 127.0.0.1:$P_GW ${RUNTIME:+"$RUNTIME"} & GW=$!; PIDS+=($GW)
taskset -c "$PROXY_CPU" "$BIN" serve "$WORK/gateway-jwt.toml" 127.0.0.1:$P_GW_JWT ${RUNTIME:+"$RUNTIME"} & GWJ=$!; PIDS+=($GWJ)
taskset -c "$PROXY_CPU" "$BIN" serve "$WORK/gateway-cache.toml" 127.0.0.1:$P_GW_C ${RUNTIME:+"$RUNTIME"} & GWC=$!; PIDS+=($GWC)
TOKEN=$("$BIN" token "$SECRET")
for p in $P_UP $P_NGINX $P_GW $P_NGINX_RL $P_GW_JWT $P_NGINX_C $P_GW_C; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
NGINX_WORKER=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
to_us() { # wrk latency like 52.00us / 1.20ms / 1.01s -> microseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
                         else if (v ~ /s$/) print n * 1000000; else print n }'
}

# measure NAME PID PORT CONNS [HEADER] -> "reqs/s cpu_us_per_req p50_us p99_us"
measure() {
  local name=$1 pid=$2 port=$3 c=$4 header=${5:-}
  local args=(-t1 -c"$c" -d"${DURATION}s" --latency)
  [ -n "$header" ] && args+=(-H "$header")
  local before=0 after=0
  [ "$pid" != "-" ] && before=$(ticks "$pid")
  local out
  out=$(taskset -c "$LOAD_CPU" wrk "${args[@]}" "http://127.0.0.1:$port/users/42")
  [ "$pid" != "-" ] && after=$(ticks "$pid")
  local reqs rps p50 p99 errors
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(to_us "$(echo "$out" | awk '$1 == "50%" {print $2}')")
  p99=$(to_us "$(echo "$out" | awk '$1 == "99%" {print $2}')")
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  [ -n "$errors" ] && echo "WARNING $name c=$c: $errors" >&2
  local cpu="-"
  if [ "$pid" != "-" ]; then
    cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$reqs" \
      'BEGIN { printf "%.1f", t * 1000000 / hz / n }')
  fi
  echo "$rps $cpu $p50 $p99"
}

{
  echo "Gateway vs nginx, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ${DURATION}s per point, gateway runtime ${RUNTIME:-workers}${MAX_HEADERS:+, max_headers $MAX_HEADERS}, load average at the start $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| scenario | conns | req/s | CPU µs/req | p50 µs | p99 µs | added p50 µs | added p99 µs |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$OUT"
declare -A R
for c in $CONNS; do
  read -r d_rps _ d50 d99 <<<"$(measure direct - $P_UP "$c")"
  echo "| upstream direct | $c | $d_rps | - | $d50 | $d99 | - | - |" >>"$OUT"
  for s in nginx gateway nginx-ratelimit gateway-jwt-ratelimit nginx-cache gateway-cache; do
    case $s in
      nginx) pid=$NGINX_WORKER port=$P_NGINX hdr="" ;;
      gateway) pid=$GW port=$P_GW hdr="" ;;
      nginx-ratelimit) pid=$NGINX_WORKER port=$P_NGINX_RL hdr="" ;;
      gateway-jwt-ratelimit) pid=$GWJ port=$P_GW_JWT hdr="Authorization: Bearer $TOKEN" ;;
      nginx-cache) pid=$NGINX_WORKER port=$P_NGINX_C hdr="" ;;
      gateway-cache) pid=$GWC port=$P_GW_C hdr="" ;;
    esac
    read -r rps cpu p50 p99 <<<"$(measure "$s" "$pid" "$port" "$c" "$hdr")"
    a50=$(awk -v a="$p50" -v b="$d50" 'BEGIN { printf "%.0f", a - b }')
    a99=$(awk -v a="$p99" -v b="$d99" 'BEGIN { printf "%.0f", a - b }')
    R[$s,$c]="$rps $cpu $a50"
    echo "| $s | $c | $rps | $cpu | $p50 | $p99 | $a50 | $a99 |" >>"$OUT"
  done
done
{
  echo
  echo "Ratios gateway ÷ nginx (CPU per request, added median latency; lower is better; req/s higher is better):"
  echo
  echo "| pair | conns | req/s ratio | CPU/req ratio | added p50 ratio |"
  echo "|---|---|---|---|---|"
  for c in $CONNS; do
    for pair in "gateway nginx" "gateway-jwt-ratelimit nginx-ratelimit" "gateway-cache nginx-cache"; do
      read -r g n <<<"$pair"
      read -r grps gcpu ga50 <<<"${R[$g,$c]}"
      read -r nrps ncpu na50 <<<"${R[$n,$c]}"
      awk -v p="$g / $n" -v c="$c" -v gr="$grps" -v nr="$nrps" -v gc="$gcpu" -v nc="$ncpu" \
        -v ga="$ga50" -v na="$na50" 'BEGIN {
          printf "| %s | %s | %.2f | %.2f | %s |\n", p, c, gr / nr, gc / nc, (na > 0 ? sprintf("%.2f", ga / na) : "n/a") }'
    done
  done
} >>"$OUT"

# ---- memory at IDLE idle keep-alive connections ------------------------------------------
pss_kb() { # pids... -> summed Pss in kB
  local sum=0 p
  for p in "$@"; do sum=$((sum + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"))); done
  echo "$sum"
}
# hold PORT PIDS... -> "pss_before_kb pss_held_kb"
hold() {
  local port=$1; shift
  local before; before=$(pss_kb "$@")
  local fifo=$WORK/idle.out
  taskset -c "$LOAD_CPU" "$BIN" idle 127.0.0.1:"$port" "$IDLE" >"$fifo" &
  local holder=$!
  for _ in $(seq 600); do grep -q ready "$fifo" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$fifo" || { echo "idle connections to $port not all opened" >&2; }
  sleep 2
  local held; held=$(pss_kb "$@")
  kill "$holder"; wait "$holder" 2>/dev/null || true
  sleep 2
  echo "$before $held"
}
if [ "$IDLE" -gt 0 ]; then
  read -r nb nh <<<"$(hold $P_NGINX "$(cat "$WORK/nginx.pid")" "$NGINX_WORKER")"
  read -r gb gh <<<"$(hold $P_GW "$GW")"
  {
    echo
    echo "Memory with $IDLE idle keep-alive client connections (Pss, MiB; nginx = master + worker):"
    echo
    echo "| proxy | before | held | per connection KiB |"
    echo "|---|---|---|---|"
    awk -v b="$nb" -v h="$nh" -v n="$IDLE" 'BEGIN { printf "| nginx | %.1f | %.1f | %.2f |\n", b/1024, h/1024, (h-b)/n }'
    awk -v b="$gb" -v h="$gh" -v n="$IDLE" 'BEGIN { printf "| gateway | %.1f | %.1f | %.2f |\n", b/1024, h/1024, (h-b)/n }'
    awk -v g="$gh" -v n="$nh" 'BEGIN { printf "\nMemory ratio gateway ÷ nginx while held: %.2f\n", g/n }'
  } >>"$OUT"
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT"
cat "$OUT"
