#!/usr/bin/env bash
# Everything a lent GPU machine should measure, in one call of under ten minutes, so that a short
# lease is spent on measuring and not on setting up: the kernel checks, the dinoscope ÷ PyTorch
# ratio table (bench/compare.sh, the full suite) and a learning run of the `tiny` preset on the
# full Fashion-MNIST with k-NN on all 60,000 → 10,000 images.
#
# Prepare here (the repository root; .bin/ and .gl/ are git-ignored):
#   cargo build --release && mkdir -p .bin && xz -T2 -3 -c target/release/dinoscope > .bin/dinoscope.xz
#   mkdir -p .bin/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz .bin/fashion-mnist/
#   (Debian's dataset-fashion-mnist), and the Vulkan loader packages in .gl/ as the device tool's
#   README says. The binary travels compressed: the working tree, the binary and the data must
#   stay under the 64 MiB a call carries.
# Then run `bash bench/device_session.sh` there, carrying .bin and .gl. Everything lands in
# $OUT/device.tgz (the machine returns at most 8 files), with summary.txt and compare.txt beside
# it for a first look.
#
# Budgets (seconds, environment): SELFTEST_S=90, COMPARE_S=330, 60 for f16 inference without
# cooperative matrices, LEARN_S=150; LEARN_STEPS=1500
# (the `tiny` schedule stretched to that length), LEARN_CONFIG=tiny.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/out/device}"
WORK=/tmp/dinoscope-device
mkdir -p "$OUT" "$WORK"
log() { echo "== $(date +%T) $*" | tee -a "$WORK/summary.txt"; }

# The Vulkan loader, where the machine lacks one.
if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"

BIN="${DINOSCOPE:-.bin/dinoscope}"
if [ -f .bin/dinoscope.xz ] && [ -z "${DINOSCOPE:-}" ]; then
  xz -dc .bin/dinoscope.xz > "$WORK/dinoscope" && chmod +x "$WORK/dinoscope" && BIN="$WORK/dinoscope"
fi
export DINOSCOPE="$BIN"
log "binary $BIN"
(nvidia-smi; "$BIN" info) > "$WORK/adapter.txt" 2>&1
head -20 "$WORK/adapter.txt" >> "$WORK/summary.txt"
# Whether the f16 products run on cooperative matrices (or why the probe turned them off).
grep -E "COOP_MATRIX|warning" "$WORK/adapter.txt" >> "$WORK/summary.txt"

log "selftest"
timeout "${SELFTEST_S:-90}" "$BIN" selftest > "$WORK/selftest.txt" 2>&1
rc=$?
echo "selftest exit $rc: $(tail -1 "$WORK/selftest.txt")" >> "$WORK/summary.txt"

log "compare.sh"
OUT="$WORK/compare" REPS="${REPS:-5}" timeout "${COMPARE_S:-330}" bench/compare.sh \
  > "$WORK/compare.txt" 2>&1
rc=$?
echo "compare.sh exit $rc" >> "$WORK/summary.txt"
cp "$WORK/compare.txt" "$OUT/compare.txt"

# The cooperative-matrix matmul's share: f16 inference with it turned off, beside compare.sh's
# f16 rows (which use it where `info` lists COOP_MATRIX).
log "f16 inference without cooperative matrices"
DINOSCOPE_COOP=0 timeout 60 "$BIN" bench vit --runs 224x64 --reps 3 --precision f16 \
  > "$WORK/coop_off.txt" 2>&1
tail -3 "$WORK/coop_off.txt" >> "$WORK/summary.txt"

data=.bin/fashion-mnist/train-images-idx3-ubyte.gz
if [ -f "$data" ]; then
  log "learning: ${LEARN_CONFIG:-tiny} over ${LEARN_STEPS:-1500} steps on the full Fashion-MNIST"
  cp "assets/configs/train_${LEARN_CONFIG:-tiny}.ron" "$WORK/learn.ron"
  sed -i -e 's/^\( *\)eval_every: [0-9]*,/\1eval_every: 500,/' \
    -e 's/^\( *\)knn_train: [0-9]*,/\1knn_train: 0,/' -e 's/^\( *\)knn_test: [0-9]*,/\1knn_test: 0,/' \
    "$WORK/learn.ron"
  rm -rf "$WORK/run"
  timeout "${LEARN_S:-150}" "$BIN" train --config "$WORK/learn.ron" --data "$data" \
    --steps "${LEARN_STEPS:-1500}" --out "$WORK/run" > "$WORK/learn.txt" 2>&1
  rc=$?
  echo "learning exit $rc (124: stopped at its budget)" >> "$WORK/summary.txt"
  grep '"knn' "$WORK/run/metrics.jsonl" 2>/dev/null | tail -5 >> "$WORK/summary.txt"
  cp "$WORK/run/metrics.jsonl" "$WORK/learn_metrics.jsonl" 2>/dev/null
  rm -rf "$WORK/run"
fi

log "done"
cp "$WORK/summary.txt" "$OUT/summary.txt"
rm -f "$WORK/dinoscope"
tar -czf "$OUT/device.tgz" -C "$WORK" .
