#!/usr/bin/env bash
# Browser tests and bench/annotator_flow.py drive Debian's Chromium through Playwright
# (launched with executable_path=/usr/bin/chromium). Playwright's own browser download is
# never used: `playwright install` fetches from a CDN this kind of machine cannot reach.
# Idempotent: does nothing when /usr/bin/chromium is already there.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-chromium: need root (or sudo) for apt-get" >&2; exit 1; }
  SUDO="sudo"
fi

echo "Installing Debian's chromium (for browser tests)…"
export DEBIAN_FRONTEND=noninteractive
# Fresh machines may have empty package lists; update only when the candidate is unknown.
if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  $SUDO apt-get update -q
fi
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
test -x /usr/bin/chromium || { echo "install-chromium: /usr/bin/chromium still missing" >&2; exit 1; }
/usr/bin/chromium --version
