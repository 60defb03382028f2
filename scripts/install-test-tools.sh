#!/usr/bin/env bash
# Idempotent: installs the tools tests/deploy/test_deploy.py runs that pip cannot provide.
#   promtool (with the prometheus server): Debian's `prometheus` package.
# Does nothing when promtool is already on PATH. Needs root (as on CI) or passwordless sudo.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi

die() {
  echo "install-test-tools: $*" >&2
  echo "install-test-tools: promtool is needed by tests/deploy/test_deploy.py; install Debian's 'prometheus'" \
       "package (or put a promtool binary on PATH) and run again" >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || die "promtool is missing and apt-get is not available on this machine"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    die "promtool is missing and installing it needs root (not root, and no passwordless sudo)"
  fi
fi

log=$(mktemp "${TMPDIR:-/tmp}/install-test-tools.XXXXXX.log")
echo "install-test-tools: installing Debian's prometheus package for promtool (log: $log)" >&2

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
     apt-get install -y -qq --no-install-recommends prometheus >>"$log" 2>&1; then
  tail -n 20 "$log" >&2
  die "apt-get install prometheus failed"
fi

command -v promtool >/dev/null 2>&1 || die "the prometheus package installed, but promtool is still not on PATH"
echo "install-test-tools: $(promtool --version 2>&1 | head -n 1)" >&2
