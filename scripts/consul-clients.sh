#!/usr/bin/env bash
# Installs the real Consul clients the registry's compatibility test drives: the PyPI
# `py-consul` package (in a Python venv) and the npm `consul` package. Idempotent: a second run
# with the versions already in place does nothing.
#
#   scripts/consul-clients.sh install   install (or update to the pinned versions)
#   scripts/consul-clients.sh check     exit 0 when both are installed, 1 otherwise
#   scripts/consul-clients.sh dir       print the install directory
#
# Directory: $FLOTILLA_CONSUL_CLIENTS_DIR, default $HOME/.cache/flotilla/consul-clients. The test
# (crates/registry/tests/consul_clients.rs) looks there too. Needs python3 with venv, and node
# with npm; when node/npm are missing and the script runs as root on Debian/Ubuntu it installs
# them with apt-get, otherwise it says what to install and fails.
set -euo pipefail

PY_CONSUL_VERSION=1.8.0
NPM_CONSUL_VERSION=2.0.1
dir=${FLOTILLA_CONSUL_CLIENTS_DIR:-$HOME/.cache/flotilla/consul-clients}

python_ok() {
  [ -x "$dir/venv/bin/python" ] &&
    "$dir/venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('py-consul') != '$PY_CONSUL_VERSION')" 2>/dev/null
}

node_ok() {
  command -v node >/dev/null &&
    [ -f "$dir/node/node_modules/consul/package.json" ] &&
    node -e "process.exit(require('$dir/node/node_modules/consul/package.json').version === '$NPM_CONSUL_VERSION' ? 0 : 1)"
}

ensure_node() {
  command -v node >/dev/null && command -v npm >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq nodejs npm
  else
    echo "node and npm are needed: install them (e.g. apt-get install nodejs npm) and rerun" >&2
    exit 1
  fi
}

install() {
  mkdir -p "$dir"
  if ! python_ok; then
    [ -x "$dir/venv/bin/python" ] || python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "py-consul==$PY_CONSUL_VERSION"
  fi
  if ! node_ok; then
    ensure_node
    mkdir -p "$dir/node"
    [ -f "$dir/node/package.json" ] || echo '{"name":"flotilla-consul-clients","private":true}' >"$dir/node/package.json"
    npm install --silent --no-audit --no-fund --prefix "$dir/node" "consul@$NPM_CONSUL_VERSION"
  fi
  python_ok && node_ok
  echo "py-consul $PY_CONSUL_VERSION and npm consul $NPM_CONSUL_VERSION installed in $dir"
}

case "${1:-}" in
  install) install ;;
  check) python_ok && node_ok ;;
  dir) echo "$dir" ;;
  *) echo "usage: $0 install|check|dir" >&2; exit 2 ;;
esac
