#!/usr/bin/env bash
# Makes sure the real servers the backend test suites use are answering on loopback:
# PostgreSQL 5432, RabbitMQ 5672, NATS JetStream 4222, Redis 6379.
#
#   scripts/services.sh check    report which answer (exit 0 always)
#   scripts/services.sh ensure   start any that does not answer; install it from Debian's
#                                packages first when it is missing and we are root; exit 1
#                                naming each server that still does not answer.
set -u

mode=${1:-check}

answers() { # host port
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

wait_for() { # name port seconds
  local i
  for ((i = 0; i < $3 * 2; i++)); do
    answers 127.0.0.1 "$2" && return 0
    sleep 0.5
  done
  return 1
}

install_pkg() { # package
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "  cannot install $1: not root or no apt-get; install it yourself" >&2
    return 1
  fi
  [ -n "${apt_updated:-}" ] || { apt-get update -qq >/dev/null 2>&1; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null 2>&1
}

start_postgres() {
  command -v pg_ctlcluster >/dev/null || install_pkg postgresql || return 1
  local version
  version=$(ls /etc/postgresql 2>/dev/null | head -n 1)
  [ -n "$version" ] || return 1
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  # Tests connect as root without a password (trust auth on loopback, as on the CI machine).
  wait_for postgres 5432 30 || return 1
  su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='root'\"" | grep -q 1 ||
    su postgres -c "createuser --superuser root" || true
  su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\"" | grep -q 1 ||
    su postgres -c "createdb -O root test" || true
}

start_rabbitmq() {
  command -v rabbitmq-server >/dev/null || install_pkg rabbitmq-server || return 1
  rabbitmq-server -detached
}

start_nats() {
  [ -x /usr/sbin/nats-server ] || install_pkg nats-server || return 1
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
}

start_redis() {
  command -v redis-server >/dev/null || install_pkg redis-server || return 1
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

failed=()
for entry in postgres:5432 rabbitmq:5672 nats:4222 redis:6379; do
  name=${entry%%:*}
  port=${entry##*:}
  if answers 127.0.0.1 "$port"; then
    echo "  $name: answers on 127.0.0.1:$port"
    continue
  fi
  if [ "$mode" != ensure ]; then
    echo "  $name: nothing answers on 127.0.0.1:$port"
    continue
  fi
  echo "  $name: not answering on 127.0.0.1:$port, starting it"
  "start_$name" >/dev/null 2>&1
  # RabbitMQ takes a while to boot.
  if wait_for "$name" "$port" 60; then
    echo "  $name: started"
  else
    failed+=("$name")
  fi
done

if [ "$mode" = ensure ] && [ ${#failed[@]} -gt 0 ]; then
  echo "services.sh: could not get these servers to answer: ${failed[*]}" >&2
  exit 1
fi
exit 0
