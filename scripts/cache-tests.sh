#!/usr/bin/env bash
# Runs the http-tests cache suite (npm `http-cache-tests`: its test origin server and its CLI)
# against a cached route of the gateway, so the RFC 9111 cache is judged by the suite other
# caches publish results for rather than by our own reading of the RFC.
#
#   scripts/cache-tests.sh install          install the pinned package (idempotent)
#   scripts/cache-tests.sh check            exit 0 when it is installed, 1 otherwise
#   scripts/cache-tests.sh dir              print the package's directory
#   scripts/cache-tests.sh run OUT [BIN]    run the suite; results JSON in OUT, summary on stdout
#
# `run` starts the suite's origin server and `flotilla up` (BIN, default `flotilla` on PATH)
# with a routes file whose only route, cached, proxies everything to that origin, then points
# the suite's CLI at the gateway. It writes the CLI's JSON (test id -> true, or the failure) to
# OUT and prints `required tests: P pass, F fail, ...` with one line per required test that did
# not pass. Directory: $FLOTILLA_CACHE_TESTS_DIR, default $HOME/.cache/flotilla/cache-tests. Needs
# node with npm; `install` installs them with apt-get when run as root on Debian/Ubuntu.
set -euo pipefail

VERSION=0.4.5
dir=${FLOTILLA_CACHE_TESTS_DIR:-$HOME/.cache/flotilla/cache-tests}
pkg=$dir/node_modules/http-cache-tests

installed() {
  command -v node >/dev/null && [ -f "$pkg/package.json" ] &&
    node -e "process.exit(require('$pkg/package.json').version === '$VERSION' ? 0 : 1)"
}

install() {
  installed && return 0
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq
      apt-get install -y -qq nodejs npm
    else
      echo "node and npm are needed: install them (e.g. apt-get install nodejs npm) and rerun" >&2
      return 1
    fi
  fi
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"name":"flotilla-cache-tests","private":true}' >"$dir/package.json"
  npm install --silent --no-audit --no-fund --prefix "$dir" "http-cache-tests@$VERSION"
  installed
}

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# Waits until something accepts connections on 127.0.0.1:$1, up to 30 s.
wait_port() {
  for _ in $(seq 300); do
    if node -e "require('net').connect($1,'127.0.0.1').on('connect',()=>process.exit(0)).on('error',()=>process.exit(1))"; then
      return 0
    fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

run() {
  local out=$1 bin=${2:-flotilla} origin_port api_port gw_port
  installed || { echo "http-cache-tests $VERSION is not installed: $0 install" >&2; return 1; }
  # Global, not local: the EXIT trap runs after this function has returned.
  work=$(mktemp -d)
  pids=()
  trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
  origin_port=$(free_port)
  api_port=$(free_port)
  gw_port=$(free_port)

  # The origin reads its settings the way `npm run server` passes them. It listens on every
  # interface; the preload binds it to loopback instead, so no other host reaches it.
  echo "const net = require('net'); const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (port, ...rest) {
  return listen.call(this, port, '127.0.0.1', ...rest)
}" >"$work/loopback.cjs"
  (cd "$pkg" && npm_config_protocol=http npm_config_port="$origin_port" \
    npm_config_pidfile="$work/origin.pid" exec node --require "$work/loopback.cjs" server/server.mjs) \
    >"$work/origin.log" 2>&1 &
  pids+=($!)
  wait_port "$origin_port"

  cat >"$work/routes.toml" <<EOF
[[upstreams]]
name = "origin"
urls = ["http://127.0.0.1:$origin_port"]
# The suite's origin answers 5xx and drops connections on purpose; a breaker or an outlier
# ejection would then refuse the tests that follow and measure the breaker, not the cache.
breaker_failures = 0
balance = "round_robin"

[[routes]]
name = "cache-tests"
prefix = "/"
upstream = "origin"
cache = { enabled = true }
EOF
  env -u FLOTILLA_CONFIG \
    FLOTILLA_SERVER__LISTEN="127.0.0.1:$api_port" FLOTILLA_SERVER__DRAIN_DELAY=0s \
    FLOTILLA_STORAGE__DATA_DIR="$work/data" \
    FLOTILLA_GATEWAY__LISTEN="127.0.0.1:$gw_port" \
    FLOTILLA_GATEWAY__ROUTES_FILE="$work/routes.toml" \
    "$bin" up >"$work/flotilla.log" 2>&1 &
  pids+=($!)
  wait_port "$gw_port" || { cat "$work/flotilla.log" >&2; return 1; }

  (cd "$pkg" && npm_config_base="http://127.0.0.1:$gw_port" npm_config_id='' npm_package_config_id='' \
    node --no-warnings cli.mjs) >"$out"
  summarise "$out"
}

# Counts the required tests (kind `required`, or no kind) of the RFC 9111 suites as the suite's
# own report does: a test whose dependency did not pass is not applicable, neither a pass nor a
# failure. The Surrogate-Control tests the CLI adds (not RFC 9111) are counted on their own line.
summarise() {
  (cd "$pkg" && node --input-type=module -e "
    import rfc9111 from './tests/index.mjs'
    import surrogate from './tests/surrogate-control.mjs'
    import { determineTestResult } from './lib/display.mjs'
    import fs from 'fs'
    const results = JSON.parse(fs.readFileSync(process.argv[1], 'utf8'))
    const all = [...rfc9111, surrogate]
    const verdict = t => {
      const r = determineTestResult(all, t.id, results, true)[2]
      return r === '✅' ? 'pass' : r === '⚪️' ? 'dependency-failed' : r === '-' ? 'not-run' : 'fail'
    }
    for (const [label, suites] of [['required tests', rfc9111], ['surrogate-control tests', [surrogate]]]) {
      const required = suites.flatMap(s => s.tests).filter(t => (t.kind ?? 'required') === 'required')
      const by = { pass: [], fail: [], 'dependency-failed': [], 'not-run': [] }
      for (const t of required) by[verdict(t)].push(t)
      console.log(label + ': ' + by.pass.length + ' pass, ' + by.fail.length + ' fail, ' +
        by['dependency-failed'].length + ' dependency failed, ' + by['not-run'].length + ' not run')
      for (const t of by.fail) console.log('  FAIL ' + t.id + ' ' + JSON.stringify(results[t.id]))
      for (const t of by['dependency-failed']) console.log('  DEPENDENCY FAILED ' + t.id + ' (' + t.depends_on.join(', ') + ')')
    }
  " "$(realpath "$1")")
}

case "${1:-}" in
  install) install ;;
  check) installed ;;
  dir) echo "$pkg" ;;
  run) run "${2:?usage: $0 run OUT [BIN]}" "${3:-}" ;;
  summary) summarise "${2:?usage: $0 summary OUT}" ;;
  *)
    echo "usage: $0 install|check|dir|run OUT [BIN]|summary OUT" >&2
    exit 2
    ;;
esac
