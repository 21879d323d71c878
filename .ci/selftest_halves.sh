# The selftest's product checks, as `--only` arguments: they compile about half of its pipelines,
# so .ci/run and bench/shader_stats.sh run them and the other checks (the same list with
# `--skip`) as two processes, one core each. Sourced from the repository root.
products=(--only kernel.matmul --only kernel.f16_matmul --only kernel.coop_matmul --only kernel.f16_products)
