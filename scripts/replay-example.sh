#!/usr/bin/env bash
# The main job on the example day of a small shop: set-up, then replay it and print every segment move.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/segments replay --input examples/shop.jsonl --output - --until 2025-12-31T00:00:00Z "$@"
