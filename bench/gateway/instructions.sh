#!/usr/bin/env bash
# The gateway's cost per proxied request counted in instructions rather than timed: the plain
# routing configuration of the gateway benches (configs.sh's gateway.toml, span export off)
# runs `bench_gateway serve` under callgrind (one worker runtime, as `flotilla gateway` on one
# core), takes a 5 s warm-up from wrk, has its counters zeroed, serves wrk for DURATION
# seconds (8 keep-alive connections, one path) and has its counters dumped; the figure is
# instructions per request over that window, every thread of the process included. Counts do
# not move with the machine's load as CPU time does (±15 % between identical rounds here).
#
# Each binary given is counted in turn against the same upstream in the same run, e.g. a base
# commit's build (its own worktree and target dir) before this tree's:
#
#   bench/gateway/instructions.sh [DURATION_SECONDS] [BENCH_GATEWAY_BINARY...]
#   RUNTIME=current bench/gateway/instructions.sh   # the gateway on one current-thread runtime
#   NGINX=1 bench/gateway/instructions.sh            # also nginx (one process, keepalive 256)
#
# Callgrind counts user-space instructions only: the system calls of a proxied request (two
# reads and two writes on each side, the same for both proxies) are not in these figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-20}
shift || true
P_UP=19090 P_SINK=19091 P_SRV=19092
SECRET="bench-secret-bench-secret-bench-secret-0123"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
. bench/tracing/common.sh
. bench/gateway/configs.sh
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
  [ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p flotilla-gateway --example bench_gateway
  bins=("$gateway")
fi
# The first binary also serves the trivial upstream, so every gateway talks to the same one.
gateway=${bins[0]}
start_upstream
WORK=$work write_gateway_configs

cg_env=(-u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_TRACES_EXPORTER GATEWAY_WORKERS=1)
count() { # command... -> instructions per request, requests counted
  count_instructions /x "$@"
}

# nginx as run.sh configures its plain proxy, in one process so callgrind sees every request.
nginx_conf() {
  mkdir -p "$work/nginx"
  cat >"$work/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $work/nginx.pid; error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fcgi; uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
$(nginx_proxy_settings)
  server { listen 127.0.0.1:$P_SRV; location / { proxy_pass http://up; } }
}
EOF
}

echo "| proxy | instructions/request | requests counted |"
echo "|---|---|---|"
if [ -n "${NGINX:-}" ]; then
  command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
  nginx_conf
  read -r per reqs < <(count nginx -c "$work/nginx.conf" -p "$work")
  echo "| nginx $(nginx -v 2>&1 | sed 's/.*\///') | $per | $reqs |"
fi
for b in "${bins[@]}"; do
  read -r per reqs < <(count "$b" serve "$work/gateway.toml" "127.0.0.1:$P_SRV" "${RUNTIME:-workers}")
  echo "| $b | $per | $reqs |"
done
