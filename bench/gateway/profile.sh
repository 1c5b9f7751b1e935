#!/usr/bin/env bash
# Where the gateway's CPU goes: samples the gateway process with `perf record -g` while wrk
# drives the routing + metrics configuration of run.sh (or the JWT + rate limit or cache one)
# at CONNS connections, and prints the hottest symbols (self time) and the share of samples
# in the kernel, the allocator, hyper, tokio and the gateway's own code. Then it counts heap
# allocations per request (malloc and realloc calls, through perf uprobes on libc, which this
# script adds and removes) while wrk runs again.
#
#   bench/gateway/profile.sh                    # plain route, 64 connections, 10 s
#   SCENARIO=jwt CONNS=256 bench/gateway/profile.sh
#   BIN=/path/to/bench_gateway bench/gateway/profile.sh   # profile another build
set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
SCENARIO=${SCENARIO:-plain}
TOP=${TOP:-40}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/flotilla/target}
command -v perf >/dev/null || { echo "perf is needed (Debian package linux-perf)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is needed (Debian package wrk)" >&2; exit 1; }
[ -n "${BIN:-}" ] || cargo build --release -q -p flotilla-gateway --example bench_gateway
BIN=${BIN:-$CARGO_TARGET_DIR/release/examples/bench_gateway}
SECRET="bench-secret-bench-secret-bench-secret-0123"
P_UP=18180 P_GW=18182
WORK=$(mktemp -d)
PIDS=()
LIBC=$(ldd "$BIN" | awk '/libc.so/ {print $3}')
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  perf probe -q -d "probe_libc:*" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

case $SCENARIO in
  plain) config=gateway.toml ;;
  jwt) config=gateway-jwt.toml ;;
  cache) config=gateway-cache.toml ;;
  *) echo "SCENARIO must be plain, jwt or cache" >&2; exit 1 ;;
esac
# The configurations run.sh measures.
# shellcheck source=bench/gateway/configs.sh
. "$(dirname "$0")/configs.sh"
write_gateway_configs

taskset -c 1 "$BIN" upstream 127.0.0.1:$P_UP & PIDS+=($!)
taskset -c 0 "$BIN" serve "$WORK/$config" 127.0.0.1:$P_GW ${RUNTIME:+"$RUNTIME"} & GW=$!; PIDS+=($GW)
for p in $P_UP $P_GW; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
hdr=()
[ "$SCENARIO" = jwt ] && hdr=(-H "Authorization: Bearer $("$BIN" token "$SECRET")")
taskset -c 1 wrk -t1 -c"$CONNS" -d2s "${hdr[@]}" "http://127.0.0.1:$P_GW/users/42" >/dev/null
taskset -c 1 wrk -t1 -c"$CONNS" -d"$((DURATION + 2))s" "${hdr[@]}" \
  "http://127.0.0.1:$P_GW/users/42" >"$WORK/wrk.out" &
WRK=$!
sleep 1
perf record -q -g -F 999 -p "$GW" -o "$WORK/perf.data" -- sleep "$DURATION" 2>/dev/null
wait "$WRK"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(awk '/Requests\/sec/' "$WORK/wrk.out")"
perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
  | grep -E "^ +[0-9]" | sed -E "s/ +/ /g" | cut -c1-150 | head -"$TOP" || true
echo
echo "share of samples by where the sampled instruction is:"
perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
  | grep -E '^ +[0-9]' | awk '
    { pct = $1; sub("%", "", pct); sym = $0 }
    sym ~ /\[kernel/             { k += pct; next }
    sym ~ /malloc|free|realloc|calloc|cfree|_int_|memcpy|memmove|memset/ { m += pct; next }
    sym ~ /hyper|httparse/        { h += pct; next }
    sym ~ /tokio|mio/             { t += pct; next }
    sym ~ /flotilla|gateway/      { g += pct; next }
    sym ~ /http::|HeaderMap|header/ { hd += pct; next }
    { o += pct }
    END { printf "kernel %.1f%%  allocator+mem* %.1f%%  hyper %.1f%%  tokio %.1f%%  http headers %.1f%%  gateway %.1f%%  other %.1f%%\n", k, m, h, t, hd, g, o }' || true

# ---- allocations per request -------------------------------------------------------------
perf probe -q -x "$LIBC" --add malloc && perf probe -q -x "$LIBC" --add realloc || { echo "cannot add uprobes on $LIBC" >&2; exit 1; }
taskset -c 1 wrk -t1 -c"$CONNS" -d5s "${hdr[@]}" "http://127.0.0.1:$P_GW/users/42" >"$WORK/wrk2.out" &
WRK=$!
sleep 1
perf stat -x, -e probe_libc:malloc,probe_libc:realloc -p "$GW" -o "$WORK/allocs" -- sleep 3
wait "$WRK"
rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk2.out")
awk -F, -v rps="$rps" '/probe_libc/ { n += $1 } END {
  printf "heap allocations per request (malloc + realloc): %.1f at %.0f req/s under the probes\n", n / (rps * 3), rps }' "$WORK/allocs"
