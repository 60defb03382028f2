#!/usr/bin/env bash
# The main job, with no configuration: set-up, then the embedded broker, a worker and the shopper
# generator, with live segment sizes in the terminal (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/segments demo "$@"
