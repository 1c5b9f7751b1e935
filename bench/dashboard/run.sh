#!/usr/bin/env bash
# The dashboard's CPU cost to an idle control plane (docs/BENCHMARKS.md#dashboard).
#   bench/dashboard/run.sh [path/to/flotilla]   (default: a release build, built if missing)
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
bin=${1:-$target/release/flotilla}
if [ $# -eq 0 ]; then cargo build --release -p flotilla-cli --bin flotilla; fi
python=${FLOTILLA_SELENIUM_VENV:-$HOME/.cache/flotilla/selenium}/bin/python
[ -x "$python" ] || { echo "no Selenium venv: run scripts/test-tools.sh install" >&2; exit 1; }
"$python" bench/dashboard/idle_cpu.py "$bin"
