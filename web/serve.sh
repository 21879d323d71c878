#!/usr/bin/env bash
# Serves web/dist on http://127.0.0.1:${PORT:-8080} (build it first with web/build.sh).
set -euo pipefail
cd "$(dirname "$0")/dist"
echo "open http://127.0.0.1:${PORT:-8080}/ in a browser with WebGPU"
exec python3 -m http.server --bind 127.0.0.1 "${PORT:-8080}"
