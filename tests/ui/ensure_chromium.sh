#!/usr/bin/env bash
# The browser tests drive Debian's Chromium with Playwright (no `playwright install`: it downloads).
# Installs Chromium when it is missing and this is root on Debian/Ubuntu; otherwise says what to run.
# The tests themselves skip, naming the same command, when it is still missing.
set -euo pipefail
chromium="${PROVISIO_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Chromium for the browser tests (apt-get install chromium)…"
  apt-get update -qq && apt-get install -y -qq chromium
else
  echo "Browser tests will be skipped: Chromium is missing. Install it with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y chromium" >&2
fi
