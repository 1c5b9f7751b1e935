#!/usr/bin/env bash
# Soak: `flotilla up --demo` under mixed load for a while, watching for leaks.
#
#   bench/soak/run.sh [MINUTES]          default 10
#
# Load, all at once for the whole run:
#   - `flotilla demo load` through the gateway (browse products, sign-ups, orders whose saga
#     reserves stock, charges and confirms or compensates: gateway, registry lookups, the bus,
#     the event store and sagas), at SOAK_RATE requests/s (default 40);
#   - registrations coming and going: a Consul-API register and deregister every 0.2 s;
#   - bus groups and event-store streams created and deleted: a group declared, published to,
#     pulled, acked and deleted, and a stream appended to, deleted and purged, every 0.5 s.
# Every 10 s it samples the control plane's /metrics (RSS, open fds, live tokio tasks) and the
# SQLite file and WAL sizes, into $OUT/samples.csv. At the end it compares the first sample
# after warm-up (SOAK_WARMUP seconds, default 120) with the last, prints the growth of each,
# and exits 1 if RSS, fds or tasks grew by more than SOAK_TOLERANCE percent (default 25).
#
# Uses target/release/flotilla (built with `cargo build --release -p flotilla-cli` when
# missing); SOAK_BIN overrides it. Ports are free ones; data goes to a fresh directory.
set -euo pipefail
cd "$(dirname "$0")/../.."

minutes=${1:-10}
rate=${SOAK_RATE:-40}
warmup=${SOAK_WARMUP:-120}
tolerance=${SOAK_TOLERANCE:-25}
target=${CARGO_TARGET_DIR:-target}
bin=${SOAK_BIN:-$target/release/flotilla}
if [ ! -x "$bin" ]; then
  cargo build --release -p flotilla-cli --bin flotilla
fi
out=${OUT:-$(mktemp -d -t flotilla-soak.XXXXXX)}
data=$out/data
mkdir -p "$data"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=$(free_port); gw=$(free_port)
ports=$(for _ in 1 2 3 4; do free_port; done | paste -sd,)
base=http://127.0.0.1:$api

env -u FLOTILLA_CONFIG \
  FLOTILLA_SERVER__LISTEN=127.0.0.1:$api FLOTILLA_GATEWAY__LISTEN=127.0.0.1:$gw \
  FLOTILLA_STORAGE__DATA_DIR="$data" FLOTILLA_SERVER__LOG_LEVEL=warn \
  "$bin" up --demo --demo-ports "$ports" >"$out/up.log" 2>&1 &
up=$!
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  kill -TERM "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 1 120); do
  curl -fs "$base/ready" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$gw/api/products" >/dev/null 2>&1 && break
  sleep 1
done
curl -fs "http://127.0.0.1:$gw/api/products" >/dev/null || { echo "the demo did not come up; see $out/up.log" >&2; exit 1; }
echo "soak: $minutes min at $rate req/s; control plane $base, gateway :$gw, output in $out"

seconds=$((minutes * 60))
"$bin" demo load --gateway "http://127.0.0.1:$gw" --rate "$rate" --duration "${seconds}s" --json \
  >"$out/load.json" 2>"$out/load.log" &
pids+=($!)

churn_registrations() {
  local i=0
  while :; do
    i=$((i + 1))
    curl -fs -X PUT "$base/v1/agent/service/register" -H 'content-type: application/json' \
      -d "{\"ID\":\"soak-$i\",\"Name\":\"soak-$((i % 7))\",\"Address\":\"127.0.0.1\",\"Port\":$((20000 + i % 1000))}" >/dev/null || true
    sleep 0.1
    curl -fs -X PUT "$base/v1/agent/service/deregister/soak-$i" >/dev/null || true
    sleep 0.1
  done
}
churn_groups_and_streams() {
  local i=0
  while :; do
    i=$((i + 1))
    local g=soak-g-$i s=soak-s-$i
    curl -fs -X PUT "$base/api/v1/bus/groups/$g" -H 'content-type: application/json' -d "{\"pattern\":\"soak.$i\"}" >/dev/null || true
    curl -fs -X POST "$base/api/v1/bus/topics/soak.$i/events" -H 'content-type: application/cloudevents+json' \
      -d "{\"specversion\":\"1.0\",\"id\":\"e-$i\",\"source\":\"/soak\",\"type\":\"soak\",\"data\":{\"i\":$i}}" >/dev/null || true
    receipt=$(curl -fs -X POST "$base/api/v1/bus/groups/$g/pull" -H 'content-type: application/json' \
      -d '{"max":1,"wait_ms":100}' | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["deliveries"][0]["receipt"] if d.get("deliveries") else "")' 2>/dev/null || true)
    [ -n "$receipt" ] && curl -fs -X POST "$base/api/v1/bus/groups/$g/ack" -H 'content-type: application/json' -d "{\"receipt\":\"$receipt\"}" >/dev/null || true
    curl -fs -X DELETE "$base/api/v1/bus/groups/$g" >/dev/null || true
    curl -fs -X POST "$base/api/v1/streams/$s" -H 'content-type: application/json' \
      -d '{"events":[{"type":"SoakHappened","data":{"n":1}},{"type":"SoakHappened","data":{"n":2}}]}' >/dev/null || true
    curl -fs -X DELETE "$base/api/v1/streams/$s" >/dev/null || true
    curl -fs -X POST "$base/api/v1/streams/$s/truncate" -H 'content-type: application/json' \
      -d '{"before":18446744073709551615}' >/dev/null || true
    sleep 0.5
  done
}
churn_registrations & pids+=($!)
churn_groups_and_streams & pids+=($!)

sample() { # elapsed
  local m
  m=$(curl -fs -H 'accept: text/plain' "$base/metrics" || true)
  metric() { printf '%s\n' "$m" | awk -v n="$1" '$1 == n { print $2; exit }'; }
  size() { stat -c %s "$1" 2>/dev/null || echo 0; }
  echo "$1,$(metric process_resident_memory_bytes),$(metric process_open_fds),$(metric tokio_alive_tasks),$(size "$data/flotilla.db"),$(size "$data/flotilla.db-wal")"
}
echo "seconds,rss_bytes,open_fds,tokio_tasks,db_bytes,wal_bytes" >"$out/samples.csv"
start=$SECONDS
while [ $((SECONDS - start)) -lt "$seconds" ]; do
  sample $((SECONDS - start)) | tee -a "$out/samples.csv"
  sleep 10
done
wait "${pids[0]}" || true
sample $((SECONDS - start)) | tee -a "$out/samples.csv"

python3 - "$out/samples.csv" "$warmup" "$tolerance" "$out/load.json" <<'PY'
import csv, json, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if all(r.values())]
warmup, tolerance = float(sys.argv[2]), float(sys.argv[3])
after = [r for r in rows if float(r["seconds"]) >= warmup]
if len(after) < 2:
    sys.exit("too few samples after warm-up: run longer than SOAK_WARMUP")
first, last = after[0], after[-1]
failed = False
print(f"\nfrom {first['seconds']} s (after warm-up) to {last['seconds']} s:")
for key, watched in [("rss_bytes", True), ("open_fds", True), ("tokio_tasks", True),
                     ("db_bytes", False), ("wal_bytes", False)]:
    a, b = float(first[key]), float(last[key])
    growth = (b - a) / a * 100 if a else 0.0
    peak = max(float(r[key]) for r in after)
    flag = "  <-- grew" if watched and growth > tolerance else ""
    failed |= bool(flag)
    print(f"  {key:12} {a:>14,.0f} -> {b:>14,.0f}  ({growth:+.1f} %, peak {peak:,.0f}){flag}")
try:
    load = json.load(open(sys.argv[4]))
    print("load:", json.dumps(load))
except Exception as e:
    print("load summary unavailable:", e)
sys.exit(1 if failed else 0)
PY
