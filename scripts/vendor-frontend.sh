#!/usr/bin/env bash
# Copy the browser libraries the pages import into static/vendor/ (git-ignored), from the
# exact versions in package-lock.json. No CDN and no build step: the labelling page imports
# these ES modules directly (templates/labelling/label.html, static/js/label/).
# Idempotent and quick: when the vendored copy matches the lock file, it does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=static/vendor/wavesurfer
STAMP=static/vendor/.package-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
  && [ -f "$DEST/wavesurfer.esm.js" ] && [ -f "$DEST/plugins/spectrogram.esm.js" ] \
  && [ -f "$DEST/LICENSE" ]; then
  exit 0
fi

command -v npm >/dev/null || { echo "vendor-frontend: npm is required (apt-get install npm)" >&2; exit 1; }
# node_modules is reused when it already holds the locked version (npm ci always wipes it).
if [ "$(node -p 'require("./node_modules/wavesurfer.js/package.json").version' 2>/dev/null)" \
  != "$(node -p 'require("./package-lock.json").packages["node_modules/wavesurfer.js"].version')" ]; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
fi

SRC=node_modules/wavesurfer.js
mkdir -p "$DEST/plugins"
cp "$SRC/dist/wavesurfer.esm.js" "$DEST/wavesurfer.esm.js"
cp "$SRC/dist/plugins/spectrogram.esm.js" "$DEST/plugins/spectrogram.esm.js"
cp "$SRC/LICENSE" "$DEST/LICENSE"
echo "$want" > "$STAMP"
echo "Vendored wavesurfer.js $(node -p 'require("./node_modules/wavesurfer.js/package.json").version') into $DEST"
