#!/usr/bin/env bash
# Idempotent: installs the tools the tests run that pip cannot provide, from Debian's packages:
#   promtool (with the prometheus server): `prometheus`, for tests/deploy/test_deploy.py;
#   chromium and its WebDriver: `chromium` and `chromium-driver`, for the console's browser test
#   (tests/integration/test_console_browser.py; selenium drives /usr/bin/chromedriver, so no
#   browser is ever downloaded, and the driver matches the browser's version).
# Installs only what is missing; does nothing when everything is there. Needs root (as on CI) or
# passwordless sudo.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

die() {
  echo "install-test-tools: $*" >&2
  echo "install-test-tools: the tests need Debian's packages ${missing[*]} (promtool for tests/deploy," \
       "/usr/bin/chromium and /usr/bin/chromedriver for the console's browser test); install them and run again" >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || die "${missing[*]} missing and apt-get is not available on this machine"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    die "${missing[*]} missing and installing needs root (not root, and no passwordless sudo)"
  fi
fi

log=$(mktemp "${TMPDIR:-/tmp}/install-test-tools.XXXXXX.log")
echo "install-test-tools: installing Debian's ${missing[*]} (log: $log)" >&2

# No service start inside containers/CI: the package's postinst would try to start prometheus.
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  if printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null 2>&1 \
     && "${SUDO[@]}" chmod 755 "$policy"; then
    made_policy=1
  fi
fi
cleanup() { if [ "$made_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

if ! "${SUDO[@]}" apt-get update -qq >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  die "apt-get update failed"
fi
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
     apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
  tail -n 20 "$log" >&2
  die "apt-get install ${missing[*]} failed"
fi

command -v promtool >/dev/null 2>&1 || die "the prometheus package installed, but promtool is still not on PATH"
[ -x /usr/bin/chromium ] || die "the chromium package installed, but /usr/bin/chromium is missing"
[ -x /usr/bin/chromedriver ] || die "the chromium-driver package installed, but /usr/bin/chromedriver is missing"
echo "install-test-tools: $(promtool --version 2>&1 | head -n 1); $(/usr/bin/chromium --version 2>/dev/null | head -n 1)" >&2
