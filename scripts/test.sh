#!/usr/bin/env bash
# The test command: set-up, then the whole suite (unit, property and integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-test-tools.sh     # promtool and a Prometheus server, for the deploy tests
exec .venv/bin/python -m pytest "$@"
