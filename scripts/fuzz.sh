#!/usr/bin/env bash
# Runs every fuzz target under fuzz/ (cargo-fuzz, libFuzzer) for a bounded time each.
#
#   scripts/fuzz.sh                 every target, FUZZ_SECONDS (default 20) each
#   scripts/fuzz.sh jwt sse         only these targets
#   FUZZ_SECONDS=600 scripts/fuzz.sh cloudevent
#
# First each target replays its inputs under fuzz/regressions/<target>/ (every crash found
# once becomes one), then it fuzzes from the seeds in fuzz/corpus/<target>/. New inputs go to
# a corpus under $HOME/.cache/flotilla/fuzz-corpus, so a run never dirties the checkout. A crash
# stops the script with the input's path and the command that replays it.
#
# cargo-fuzz drives the pinned stable compiler with the flags libFuzzer needs
# (RUSTC_BOOTSTRAP=1 lets it accept them); no sanitizer: the code under test has no unsafe.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_fuzz_version=0.13.2
seconds=${FUZZ_SECONDS:-20}
cache=${FLOTILLA_CACHE:-$HOME/.cache/flotilla}
target_dir=$cache/fuzz-target
export RUSTC_BOOTSTRAP=1 CARGO_INCREMENTAL=0

if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  echo "installing cargo-fuzz $cargo_fuzz_version"
  CARGO_TARGET_DIR=$cache/cargo-fuzz-build cargo install --quiet --locked \
    --version "$cargo_fuzz_version" cargo-fuzz
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

fuzz() { # target args...
  cargo fuzz run --fuzz-dir fuzz --target-dir "$target_dir" -s none "$@"
}

cargo fuzz build --fuzz-dir fuzz --target-dir "$target_dir" -s none
for t in "${targets[@]}"; do
  artifacts=$cache/fuzz-artifacts/$t
  work=$cache/fuzz-corpus/$t
  mkdir -p "$artifacts" "$work"
  if compgen -G "fuzz/regressions/$t/*" >/dev/null; then
    fuzz "$t" fuzz/regressions/"$t"/* -- -runs=0 >/dev/null 2>&1 || {
      echo "$t: a regression input fails again; replay: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -s none $t fuzz/regressions/$t/<file>" >&2
      exit 1
    }
  fi
  log=$artifacts/last-run.log
  if ! fuzz "$t" "$work" "fuzz/corpus/$t" -- -max_total_time="$seconds" \
    -artifact_prefix="$artifacts/" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    crash=$(grep -o "Test unit written to [^ ]*" "$log" | tail -1 | cut -d' ' -f5)
    echo "$t: FAILED; the input is $crash; replay: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -s none $t $crash" >&2
    exit 1
  fi
  runs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "$log" | grep -o "[0-9]*$" || echo "?")
  echo "$t: ok, $runs inputs in ${seconds}s"
done
