#!/usr/bin/env bash
# The whole test command (README Quick start, and what CI runs): installs everything
# the suite needs from the project's own files, then lint, types and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# The real Claude Code CLI for the end-to-end tests, pinned by tests/e2e/package-lock.json.
npm ci --prefix tests/e2e --no-audit --no-fund --loglevel=error
# The dashboard's toolchain (unit tests, browser driver), pinned by dashboard/package-lock.json,
# and Debian's Chromium for the headless browser tests (playwright-core drives it; no
# browser download). Both are quick no-ops when already installed.
# `npm ci` always reinstalls (~25 s), so it runs only when the lock changed since the last one.
dashboard_lock=$(sha256sum dashboard/package-lock.json | cut -d' ' -f1)
if [ "$(cat dashboard/node_modules/.lock-sha256 2>/dev/null)" != "$dashboard_lock" ]; then
    npm ci --prefix dashboard --no-audit --no-fund --loglevel=error
    echo "$dashboard_lock" > dashboard/node_modules/.lock-sha256
fi
# chromium: the dashboard's browser tests; valgrind: the bench's instruction counts.
missing=""
command -v chromium >/dev/null || missing="$missing chromium"
command -v valgrind >/dev/null || missing="$missing valgrind"
if [ -n "$missing" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi

ruff check gateway bench tests infra
ruff format --check gateway bench tests infra
mypy
npm --prefix dashboard run --silent typecheck
# pytest's own exit code stands: 5 (no tests ran) fails the run like any failure.
python3 -m pytest -q -p no:cacheprovider "$@"
