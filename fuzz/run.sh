#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600) on nightly with cargo-fuzz, growing the
# committed corpus; crashes land in fuzz/artifacts/<target>/. Needs `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-600}"
mkdir -p logs
for t in weights configs idx image checkpoint; do
  echo "=== $t ($secs s)"
  cargo +nightly fuzz run "$t" -O -- -max_total_time="$secs" -rss_limit_mb=3072 -timeout=30 \
    -print_final_stats=1 >"logs/$t.log" 2>&1 || echo "$t: FAILED (see fuzz/logs/$t.log)"
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|ERROR|panicked" "logs/$t.log" || true
done
