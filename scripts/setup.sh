#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a virtualenv in .venv with the package and its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "setting up .venv (first run only; log in .venv/install.log)" >&2
  { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e '.[dev]'; } \
    > .venv/install.log 2>&1 || { tail -n 40 .venv/install.log >&2; exit 1; }
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# The engine's compiled modules (setup.py): the editable install built them; rebuild those whose
# source changed since (a second when none did), so the tests never run a stale build.
.venv/bin/python setup.py -q build_ext --inplace > .venv/build.log 2>&1 || { tail -n 40 .venv/build.log >&2; exit 1; }
