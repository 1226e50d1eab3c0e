#!/usr/bin/env bash
# The whole test command (README Quick start, and what CI runs): installs everything
# the suite needs from the project's own files, then lint, types and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# The real Claude Code CLI for the end-to-end tests, pinned by tests/e2e/package-lock.json.
npm ci --prefix tests/e2e --no-audit --no-fund --loglevel=error

ruff check gateway bench tests infra
ruff format --check gateway bench tests infra
mypy
# pytest's own exit code stands: 5 (no tests ran) fails the run like any failure.
python3 -m pytest -q -p no:cacheprovider "$@"
