#!/usr/bin/env bash
# Event-bus broker backends vs the brokers' own Rust clients, same workload and durability, in
# one run: publish throughput (4 publishers, batches of 50, 20,000 events) and
# publish-to-handler latency p50/p99 (2,000 single events). Results go in docs/BENCHMARKS.md
# ("Event bus" / "Broker backends").
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/flotilla/target}"

answers() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_if_down() {
  local port=$1 name=$2; shift 2
  answers "$port" && return 0
  echo "$name is not answering on $port; starting it"
  "$@" || true
  for _ in $(seq 60); do answers "$port" && return 0; sleep 0.5; done
  echo "$name did not start on 127.0.0.1:$port" >&2
  exit 1
}
start_if_down 5672 RabbitMQ rabbitmq-server -detached
start_if_down 4222 NATS start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
  -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
start_if_down 6379 Redis redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
  --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log

for crate in nats amqp redis; do
  echo "== flotilla-$crate"
  cargo bench -q -p "flotilla-$crate" --bench broker
done
