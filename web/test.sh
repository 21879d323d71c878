#!/usr/bin/env bash
# The browser test: builds web/dist, then drives headless Chromium (WebGPU on its software
# adapter) against it with playwright-core. Needs `chromium` (Debian: apt-get install chromium)
# and node/npm. Screenshot and status land in web/test/out/.
set -euo pipefail
cd "$(dirname "$0")"
(cd test && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund; })
./build.sh
cd test
node browser_test.mjs
