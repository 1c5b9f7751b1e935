#!/usr/bin/env bash
# Installs the ecosystem tools some tests drive, so they check Flotilla against the real thing
# rather than against our own reading of a spec:
#   - promtool (Debian's `prometheus` package): `promtool check metrics` on every /metrics;
#   - the official Python CloudEvents SDK (PyPI `cloudevents`), in a venv under
#     $HOME/.cache/flotilla/, for the broker's interoperability test;
#   - the real Consul clients (PyPI `py-consul`, npm `consul`), through scripts/consul-clients.sh;
#   - a real headless browser for the dashboard's browser test: Debian's `chromium` and
#     `chromium-driver`, driven by Python Selenium (PyPI `selenium`) in a venv under
#     $HOME/.cache/flotilla/.
# The gateway cache's test also needs the http-tests cache suite (npm `http-cache-tests`),
# installed by scripts/cache-tests.sh, and the deployment files' test the validators
# (hadolint, check-jsonschema, kubernetes-validate from PyPI) that scripts/deploy-check.sh
# installs.
# Tests that need a tool skip visibly when it is absent (and fail when
# FLOTILLA_REQUIRE_BACKENDS=all, as in CI).
#
#   scripts/test-tools.sh install   install what is missing (idempotent; apt-get only as root)
#   scripts/test-tools.sh check     report what is there (exit 0 always)
set -euo pipefail

mode=${1:-check}
venv=${FLOTILLA_CLOUDEVENTS_VENV:-$HOME/.cache/flotilla/cloudevents-sdk}
# Pinned so a new SDK release cannot change what CI tests against without a commit.
cloudevents_version=2.2.0
selenium_venv=${FLOTILLA_SELENIUM_VENV:-$HOME/.cache/flotilla/selenium}
selenium_version=4.27.1

have_promtool() { command -v promtool >/dev/null; }
have_chromium() { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }
have_selenium() { [ -x "$selenium_venv/bin/python" ] && "$selenium_venv/bin/python" -c 'import selenium' 2>/dev/null; }
have_sdk() { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import cloudevents' 2>/dev/null; }

apt_install() { # package...
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "  cannot install $*: not root or no apt-get; install it yourself" >&2
    return 1
  fi
  apt-get update -qq >/dev/null
  # The prometheus package would start a server; tests need only its promtool.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

install_promtool() {
  have_promtool && return 0
  apt_install prometheus
  have_promtool
}

install_sdk() {
  have_sdk && "$venv/bin/python" -m pip show cloudevents 2>/dev/null |
    grep -qx "Version: $cloudevents_version" && return 0
  if ! python3 -m venv --help >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "cloudevents==$cloudevents_version"
  have_sdk
}

# The browser and its driver come from Debian, so they match each other and work offline; only
# the Python driver library comes from PyPI, pinned like the SDK above.
install_chromium() {
  if ! have_chromium; then
    apt_install chromium chromium-driver
  fi
  have_selenium && "$selenium_venv/bin/python" -m pip show selenium 2>/dev/null |
    grep -qx "Version: $selenium_version" && return 0
  if ! python3 -m venv --help >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  mkdir -p "$(dirname "$selenium_venv")"
  python3 -m venv "$selenium_venv"
  "$selenium_venv/bin/python" -m pip install -q --disable-pip-version-check \
    "selenium==$selenium_version"
  have_chromium && have_selenium
}

# The suite's origin server and CLI, pinned in scripts/cache-tests.sh.
install_cache_tests() {
  bash "$(dirname "$0")/cache-tests.sh" install
}

report() {
  if have_promtool; then echo "  promtool: $(command -v promtool)"; else echo "  promtool: missing"; fi
  if have_sdk; then echo "  cloudevents SDK: $venv"; else echo "  cloudevents SDK: missing"; fi
  if have_chromium; then echo "  chromium: $(command -v chromium)"; else echo "  chromium: missing"; fi
  if have_selenium; then echo "  selenium: $selenium_venv"; else echo "  selenium: missing"; fi
  if bash "$(dirname "$0")/consul-clients.sh" check >/dev/null 2>&1; then
    echo "  Consul clients: $(bash "$(dirname "$0")/consul-clients.sh" dir)"
  else
    echo "  Consul clients: missing"
  fi
  if bash "$(dirname "$0")/cache-tests.sh" check; then
    echo "  http-tests cache suite: $(bash "$(dirname "$0")/cache-tests.sh" dir)"
  else
    echo "  http-tests cache suite: missing"
  fi
}

case $mode in
  check) report ;;
  install)
    failed=0
    install_promtool || { echo "promtool could not be installed" >&2; failed=1; }
    install_sdk || { echo "the Python cloudevents SDK could not be installed" >&2; failed=1; }
    install_chromium || { echo "chromium or selenium could not be installed" >&2; failed=1; }
    bash "$(dirname "$0")/consul-clients.sh" install ||
      { echo "the Consul clients could not be installed" >&2; failed=1; }
    install_cache_tests || { echo "the http-tests cache suite could not be installed" >&2; failed=1; }
    bash "$(dirname "$0")/deploy-check.sh" install ||
      { echo "the deployment files' validators could not be installed" >&2; failed=1; }
    report
    exit $failed
    ;;
  *)
    echo "usage: $0 install|check" >&2
    exit 2
    ;;
esac
