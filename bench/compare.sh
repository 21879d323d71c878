#!/usr/bin/env bash
# dinoscope and PyTorch on the same machine, same workloads, one command; prints the ratio table
# (dinoscope ÷ PyTorch) that BENCHMARKS.md records.
#
#   bench/compare.sh            the full suite (a GPU): matmul 1024–8192 (each vec4 tile too)
#                               and the ViT-S linear shapes, attention, a copy and the
#                               memory-bound kernels (LN, GELU, softmax, residual, EMA, AdamW;
#                               ratio.py sets them against the copy), ViT-S/14 inference at 224
#                               batch 1 and 64 and 518 batch 8 (f32 and --precision f16), the
#                               vits14 training step at batch 64 (f32 and mixed precision), and
#                               the small model a laptop trains (the fmnist preset's step, batch
#                               256, on the bundled subset, against PyTorch's twin at its sizes);
#                               PyTorch fp32 (TF32 off) and bf16 autocast
#   bench/compare.sh --quick    sizes a CPU adapter (lavapipe) finishes: matmul 1024–2048,
#                               attention at batch 4, ViT-S/14 224 batch 1, the debug-sized step
#   bench/compare.sh --small    only the small model's step, both sides, and its profile
#
# Needs a release build (cargo build --release; or DINOSCOPE=path/to/dinoscope) and python3 with
# torch (timm optional). Results go to bench/out/ (OUT=... to change); train_profile.txt there is
# the training step's GPU time by kernel, vit_profile.txt (and _f16) inference's,
# small_profile.txt the small model's step's.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${DINOSCOPE:-target/release/dinoscope}"
OUT="${OUT:-bench/out}"
REPS="${REPS:-5}"
mkdir -p "$OUT"
quick=""
small_only=""
[ "${1:-}" = "--quick" ] && quick=1
[ "${1:-}" = "--small" ] && small_only=1

# Each part runs even when one before it failed, and the ratio table is printed once the
# inference rows and PyTorch are in and again after the training rows, so a run stopped at a
# time limit still gives what it measured.
part() { echo "== $(date +%T) $*" >&2; "$@" || echo "compare.sh: failed ($?): $*" >&2; }
ratios() {
  python3 bench/ratio.py "$OUT/kernels.json" "$OUT/vit.json" "$OUT/vit_f16.json" "$OUT/train.json" \
    "$OUT/train_mixed.json" "$OUT/train_small.json" -- "${torch_files[@]}" > "$OUT/ratios.md"
}
# The small model a laptop trains: the fmnist preset (width 64, 4 blocks of 2 heads, patch 7 on
# 28-px crops, a 512-wide head of 256 prototypes, batch 256) on the bundled subset, 20 steps, and
# PyTorch's twin of its step at the same sizes (random crops, so no loader). A step this small is
# hundreds of short kernels: the profile after it says whether the kernels, the gaps between
# them or the host (its `host:` line) bound it.
small_step() {
  part "$BIN" bench train --config fmnist --steps 20 --json "$OUT/train_small.json"
  part python3 bench/pytorch_reference.py --json "$OUT/torch_small.json" --train-only --dim 64 \
    --depth 4 --heads 2 --patch 7 --global-size 28 --n-local 0 --prototypes 256 --head-hidden 512 \
    --bottleneck 64 --train-batch 256 --train-steps 20
  torch_files+=("$OUT/torch_small.json")
  part "$BIN" bench train --config fmnist --steps 3 --profile > "$OUT/small_profile.txt"
}
rm -f "$OUT"/{kernels,vit,vit_f16,train,train_mixed,train_small,torch,torch_bf16,torch_small}.json
if [ -n "$small_only" ]; then
  torch_files=()
  small_step
  ratios
  cat "$OUT/ratios.md"
  exit 0
fi
if [ -n "$quick" ]; then
  part "$BIN" bench kernels --quick --general --reps "$REPS" --json "$OUT/kernels.json"
  part "$BIN" bench vit --runs 224x1 --reps "$REPS" --json "$OUT/vit.json"
  part "$BIN" bench vit --runs 224x1 --reps "$REPS" --precision f16 --json "$OUT/vit_f16.json"
  # The debug preset's sizes: width 64, 4 blocks, patch 7, two 28-px crops, no local crops,
  # 256 prototypes.
  torch_args=(--quick --vit-runs 224x1 --dim 64 --depth 4 --patch 7 --global-size 28 --local-size 14
              --n-local 0 --prototypes 256 --train-batch 32)
  train_config=debug
else
  part "$BIN" bench kernels --general --tiles --reps "$REPS" --json "$OUT/kernels.json"
  part "$BIN" bench vit --runs 224x1,224x64,518x8 --reps "$REPS" --json "$OUT/vit.json"
  part "$BIN" bench vit --runs 224x1,224x64,518x8 --reps "$REPS" --precision f16 --json "$OUT/vit_f16.json"
  torch_args=()
  train_config=vits14
fi
part python3 bench/pytorch_reference.py --json "$OUT/torch.json" --reps "$REPS" "${torch_args[@]}"
torch_files=("$OUT/torch.json")
if [ -z "$quick" ] && python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  part python3 bench/pytorch_reference.py --json "$OUT/torch_bf16.json" --reps "$REPS" --bf16
  torch_files+=("$OUT/torch_bf16.json")
fi
ratios
part "$BIN" bench train --config "$train_config" --steps 3 --json "$OUT/train.json"
part "$BIN" bench train --config "$train_config" --steps 3 --precision mixed --json "$OUT/train_mixed.json"
[ -z "$quick" ] && small_step
ratios
cat "$OUT/ratios.md"
# Where the step's GPU time goes, kernel by kernel (after the timed steps, so it does not slow
# them).
part "$BIN" bench train --config "$train_config" --steps 1 --profile > "$OUT/train_profile.txt"
part "$BIN" bench train --config "$train_config" --steps 1 --profile --precision mixed \
  > "$OUT/train_profile_mixed.txt"
# And inference's, f32 and f16: at batch 1 (few workgroups a dispatch; the H200 once ran f16
# slower than f32 there) and at the batch the ratio table compares.
vit_runs=224x1,224x64
[ -n "$quick" ] && vit_runs=224x1
part "$BIN" bench vit --runs "$vit_runs" --reps 3 --profile > "$OUT/vit_profile.txt"
part "$BIN" bench vit --runs "$vit_runs" --reps 3 --profile --precision f16 \
  > "$OUT/vit_profile_f16.txt"
