#!/usr/bin/env bash
# Runs the W3C trace-context test suite (github.com/w3c/trace-context, its `test/` harness)
# against crates/flotilla/examples/tracecontext.rs, a service on the SDK whose `/test`
# endpoint makes the harness's callbacks with ServiceClient.
#
# The harness is not on a package registry: it is cloned (pinned) under $HOME/.cache/flotilla,
# outside the repository, with its one dependency (PyPI `aiohttp`) in a venv beside it.
#
#   scripts/tracecontext.sh            clone/install what is missing, build, run, report
#
# Environment: SPEC_LEVEL and STRICT_LEVEL (default 2 and 2), TRACECONTEXT_REPO (a clone URL
# or path of the suite), TRACECONTEXT_PORT (default 5000; the harness itself uses 7777).
set -euo pipefail

cd "$(dirname "$0")/.."
cache=$HOME/.cache/flotilla
suite=$cache/trace-context
venv=$cache/trace-context-venv
repo=${TRACECONTEXT_REPO:-https://github.com/w3c/trace-context}
# Pinned so a change to the suite cannot change what we test against without a commit here.
commit=acab820be9db7b3433668baa5cdd43f57f4c4be0
aiohttp_version=3.14.5
port=${TRACECONTEXT_PORT:-5000}
export SPEC_LEVEL=${SPEC_LEVEL:-2} STRICT_LEVEL=${STRICT_LEVEL:-2}

if [ ! -d "$suite/.git" ]; then
  git clone -q "$repo" "$suite"
fi
git -C "$suite" checkout -q "$commit"
if ! "$venv/bin/python" -c 'import aiohttp' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "aiohttp==$aiohttp_version"
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
cargo build -q -p flotilla --example tracecontext
"$CARGO_TARGET_DIR/debug/examples/tracecontext" "127.0.0.1:$port" &
service=$!
trap 'kill $service 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$port/ready" >/dev/null; then break; fi
  sleep 0.1
done

cd "$suite/test"
"$venv/bin/python" test.py "http://127.0.0.1:$port/test"
