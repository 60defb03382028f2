#!/usr/bin/env bash
# The test command: set-up, then the whole suite (unit, property and integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-test-tools.sh     # promtool (deploy tests), chromium and chromedriver (the console's browser test)
.venv/bin/ruff check stream tests                  # lint (pyproject.toml [tool.ruff])
.venv/bin/mypy                                     # types: strict on the core (pyproject.toml [tool.mypy])
exec .venv/bin/python -m pytest "$@"
