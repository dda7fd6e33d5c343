#!/usr/bin/env bash
# Regenerate docs/report.png: the drift report of the demo tree (`make demo` first),
# rendered by headless Chromium at 1280 x 1600.
# Usage: docs/make_report_screenshot.sh [DEMO_TREE]   (default: demo-tree)
set -euo pipefail
cd "$(dirname "$0")/.."
tree="${1:-demo-tree}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
.venv/bin/metricsduck report "$tree" --run latest -o "$work/drift_report.html"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" --hide-scrollbars --window-size=1280,1600 \
    --screenshot="$work/report.png" "file://$work/drift_report.html" 2>/dev/null
mv "$work/report.png" docs/report.png
echo "wrote docs/report.png"
