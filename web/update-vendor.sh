#!/usr/bin/env bash
# Re-create the committed browser libraries from the versions pinned in web/package.json.
# Run by hand when upgrading (needs Node.js and the npm registry); never at install or test time.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp package.json "$work/"
(cd "$work" && npm install --no-audit --no-fund --silent)
n="$work/node_modules"
v=static/vendor
rm -rf "$v/leaflet" "$v/uplot"
mkdir -p "$v/leaflet/images" "$v/uplot" ../tests/browser/vendor
cp "$n/leaflet/dist/leaflet.js" "$n/leaflet/dist/leaflet.css" "$n/leaflet/LICENSE" "$v/leaflet/"
cp "$n/leaflet/dist/images/"* "$v/leaflet/images/"
cp "$n/uplot/dist/uPlot.iife.min.js" "$n/uplot/dist/uPlot.min.css" "$n/uplot/LICENSE" "$v/uplot/"
cp "$n/axe-core/axe.min.js" ../tests/browser/vendor/
cp "$n/axe-core/LICENSE" ../tests/browser/vendor/LICENSE-axe-core
echo "vendored: leaflet $(node -p "require('$n/leaflet/package.json').version"), uplot $(node -p "require('$n/uplot/package.json').version"), axe-core $(node -p "require('$n/axe-core/package.json').version")"
