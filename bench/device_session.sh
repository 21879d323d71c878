#!/usr/bin/env bash
# Everything a GPU machine that is reachable only briefly should measure, in one remote call of
# under ten minutes, so its time is spent on measuring and not on setting up: the kernel checks,
# the dinoscope ÷ PyTorch ratio table (bench/compare.sh, the full suite) and a learning run of the
# `fmnist` preset on the full Fashion-MNIST with k-NN on all 60,000 → 10,000 images, its schedule
# fitted to LEARN_S.
#
# Prepare here (the repository root; .bin/ and .gl/ are git-ignored):
#   cargo build --release && mkdir -p .bin && xz -T2 -3 -c target/release/dinoscope > .bin/dinoscope.xz
#   mkdir -p .bin/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz .bin/fashion-mnist/
#   (Debian's dataset-fashion-mnist), and, for a machine with the NVIDIA driver but no Vulkan
#   loader, Debian's libvulkan1 (and its dependencies) as .deb files in .gl/, unpacked there. The
#   binary travels compressed: where the call carries at most 64 MiB, the working tree, the binary
#   and the data must fit (strip the binary and use `xz -9e`; the training images may travel as
#   plain IDX compressed with xz, train-images-idx3-ubyte.xz, unpacked there).
# PHASES (default "bench learn tune") picks the parts, so the time can be split over two calls:
# e.g. PHASES="bench tune" first, then PHASES=learn with the time that is left.
# Then run `bash bench/device_session.sh` there, with .bin and .gl, with a limit of 600 s.
# Every result is written to $OUT as soon as it exists (summary.txt first), so a call stopped at
# its limit still returns what was measured; device.tgz at the end holds the full logs.
#
# Budgets (seconds, environment): SELFTEST_S=60, COMPARE_S=260, COOP_OFF_S=40, LEARN_S=120
# (training and evaluations: `train --time-limit`, which sizes the schedule to it),
# LEARN_CONFIG=fmnist, LEARN_TIMING_STEPS=20 (`bench train`'s timed steps, within 40 s),
# TUNE_S=90 (last, twice: the f32 and then the f16 products of `vits14`, then its attention
# passes with every variant; the f16 products set cooperative matrices against the plain
# kernels; an H200 took 38 s for the f32 products alone).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/out/device}"
WORK=/tmp/dinoscope-device
mkdir -p "$OUT" "$WORK"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
log() { echo "== $(date +%T) $*" | tee -a "$SUMMARY"; }

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
PHASES="${PHASES:-bench learn tune}"
has() { [[ " $PHASES " == *" $1 "* ]]; }
nvidia-smi > "$WORK/adapter.txt" 2>&1
# The first device open also times the vec4 tiles for large products and caches the fastest
# (tune::calibrate), the square and wide cooperative tiles for large f16 products
# (tune::calibrate_coop), their split K (tune::calibrate_split) and attention's variants: f16
# default or cooperative matrices, f32 splits of a token (tune::calibrate_attention). Their log
# lines say which, and every later command takes them.
RUST_LOG=dinoscope=info "$BIN" info >> "$WORK/adapter.txt" 2>&1
info_rc=$?
head -20 "$WORK/adapter.txt" >> "$SUMMARY"
grep -E "products take|attention takes" "$WORK/adapter.txt" >> "$SUMMARY"
grep -iE "adapter|driver|backend" "$WORK/adapter.txt" | head -8 >> "$SUMMARY"
if [ "$info_rc" != 0 ]; then
  # The calibrations are the first kernels the device runs: if they brought the process down,
  # every later command would too. Without them the defaults stand and the rest still measures.
  log "info failed ($info_rc); again without the first-run calibrations"
  tail -20 "$WORK/adapter.txt" >> "$SUMMARY"
  DINOSCOPE_CALIBRATE=0 "$BIN" info >> "$WORK/adapter.txt" 2>&1 && export DINOSCOPE_CALIBRATE=0
  info_rc=$?
  [ "$info_rc" = 0 ] && log "the rest runs with DINOSCOPE_CALIBRATE=0 (the defaults, uncalibrated)"
fi
if [ "$info_rc" != 0 ]; then  # no adapter: say so at once, and keep the time for a fixed rerun
  log "info failed ($info_rc)"; tail -20 "$WORK/adapter.txt" >> "$SUMMARY"; exit 1
fi
# Whether the f16 products run on cooperative matrices (or why the probe turned them off).
grep -E "COOP_MATRIX|    offered:|warning|large products take" "$WORK/adapter.txt" >> "$SUMMARY"

if has bench; then
log "selftest"
timeout "${SELFTEST_S:-60}" "$BIN" selftest > "$WORK/selftest.txt" 2>&1
rc=$?
echo "selftest exit $rc: $(tail -1 "$WORK/selftest.txt")" >> "$SUMMARY"
grep -iE "fail|mismatch" "$WORK/selftest.txt" | head -20 >> "$SUMMARY"

log "compare.sh"
OUT="$WORK/compare" REPS="${REPS:-5}" timeout "${COMPARE_S:-260}" bench/compare.sh \
  > "$OUT/compare.txt" 2>&1
rc=$?
echo "compare.sh exit $rc (124: stopped at its budget)" >> "$SUMMARY"
cp "$WORK/compare/ratios.md" "$WORK/compare/"{train,vit,small}_profile*.txt "$OUT/" 2>/dev/null
cat "$WORK/compare/ratios.md" >> "$SUMMARY" 2>/dev/null
# Where each step's time goes: the kernels, then each product and attention pass at its rate.
for f in train_profile train_profile_mixed; do
  echo "-- $f" >> "$SUMMARY"
  sed -n '/^GPU time by kernel/,/^GPU time by product/{p}' "$WORK/compare/$f.txt" 2>/dev/null \
    | head -14 >> "$SUMMARY"
  sed -n '/^GPU time by product/,$p' "$WORK/compare/$f.txt" 2>/dev/null | head -24 >> "$SUMMARY"
done
# The small model's step: wall clock, the host's share and the GPU's sum (whether the kernels,
# the gaps between them or the host bound it), then its longest kernels.
echo "-- small_profile" >> "$SUMMARY"
grep -E "steps:|^host:|^GPU time by kernel" "$WORK/compare/small_profile.txt" 2>/dev/null >> "$SUMMARY"
sed -n '/^GPU time by kernel/,/^GPU time by product/{p}' "$WORK/compare/small_profile.txt" 2>/dev/null \
  | sed -n '2,13p' >> "$SUMMARY"
# Inference's, run by run: how much of the forward the dispatches fill, the longest kernels, the
# longest products and attention passes.
for f in vit_profile vit_profile_f16; do
  echo "-- $f" >> "$SUMMARY"
  awk '/^profile of/ {print; k = 12; next} /^GPU time by (kernel|product)/ {k = 12} k > 0 {print; k--}' \
    "$WORK/compare/$f.txt" 2>/dev/null >> "$SUMMARY"
done

# The cooperative-matrix matmul's share: f16 inference with it turned off, beside compare.sh's
# f16 rows (which use it where `info` lists COOP_MATRIX).
log "f16 inference without cooperative matrices"
DINOSCOPE_COOP=0 timeout "${COOP_OFF_S:-40}" "$BIN" bench vit --runs 224x64 --reps 3 \
  --precision f16 > "$WORK/coop_off.txt" 2>&1
tail -3 "$WORK/coop_off.txt" >> "$SUMMARY"
fi

data=.bin/fashion-mnist/train-images-idx3-ubyte.gz
if [ -f .bin/fashion-mnist/train-images-idx3-ubyte.xz ]; then
  mkdir -p "$WORK/fmnist"
  xz -dc .bin/fashion-mnist/train-images-idx3-ubyte.xz > "$WORK/fmnist/train-images-idx3-ubyte"
  cp .bin/fashion-mnist/*.gz "$WORK/fmnist/"
  data="$WORK/fmnist/train-images-idx3-ubyte"
fi
if has learn && [ -f "$data" ]; then
  config="${LEARN_CONFIG:-fmnist}"
  budget="${LEARN_S:-120}"
  if [ "${LEARN_TIMING_STEPS:-20}" != 0 ]; then
  log "learning: timing $config"
  # The loader alone first (no GPU): whether its workers keep ahead of the step timed next.
  timeout 20 "$BIN" bench loader --config "$config" --data "$data" --batches 100 \
    > "$WORK/loader.txt" 2>&1
  cat "$WORK/loader.txt" >> "$SUMMARY"
  timeout 40 "$BIN" bench train --config "$config" --data "$data" \
    --steps "${LEARN_TIMING_STEPS:-20}" --json "$WORK/learn_speed.json" > "$WORK/learn_speed.txt" 2>&1
  cat "$WORK/learn_speed.txt" >> "$SUMMARY"
  fi
  # The schedule is fitted to the budget by the trainer itself (`--time-limit`: it times the
  # first steps, then spans what fits, evaluations included); no checkpoints but the last.
  cp "assets/configs/train_$config.ron" "$WORK/learn.ron"
  sed -i -e "s/^\( *\)checkpoint_every: [0-9]*,/\1checkpoint_every: 0,/" \
    -e 's/^\( *\)knn_train: [0-9]*,/\1knn_train: 0,/' -e 's/^\( *\)knn_test: [0-9]*,/\1knn_test: 0,/' \
    "$WORK/learn.ron"
  log "learning: $config for ${budget} s on the full Fashion-MNIST"
  rm -rf "$WORK/run"
  # SIGTERM asks a run to stop at its next step with a checkpoint; -k kills one that hangs.
  timeout -k 15 $((budget + ${LEARN_MARGIN_S:-40})) "$BIN" train --config "$WORK/learn.ron" --data "$data" \
    --time-limit "${budget}s" --out "$WORK/run" > "$OUT/learn.txt" 2>&1
  rc=$?
  echo "learning exit $rc (124: stopped by timeout)" >> "$SUMMARY"
  grep -E "^(step|evaluation|data loader|mixed|time limit|the time limit)|error" "$OUT/learn.txt" | tail -16 >> "$SUMMARY"
  grep '"knn' "$WORK/run/metrics.jsonl" 2>/dev/null | python3 -c 'import json,sys
for l in sys.stdin:
    j = json.loads(l)
    print("step", j.get("step", -1) + 1 if "step" in j else 0, "k-NN", j.get("knn"), "probe",
          j.get("probe"), "elapsed_s", round(j.get("elapsed_s", 0), 1))' >> "$SUMMARY"
  cp "$WORK/run/metrics.jsonl" "$OUT/learn_metrics.jsonl" 2>/dev/null
  rm -rf "$WORK/run" "$WORK/fmnist"
fi

# Whether the defaults pick what the tuner would: it times every candidate plan of the `vits14`
# step's products, f32 and then f16 (cooperative matrices against the plain kernels), and the
# f32 step is timed again with the winners (its cache goes to $WORK/tune).
if has tune; then
log "tune: the vits14 step's f32 products"
DINOSCOPE_CACHE_DIR="$WORK/tune" timeout "${TUNE_S:-90}" "$BIN" tune --config vits14 \
  --reps 2 > "$WORK/tune_f32.txt" 2>&1
echo "tune exit $? (124: stopped at its budget; the lines before are complete)" >> "$SUMMARY"
grep -E "^all products|^saved" "$WORK/tune_f32.txt" >> "$SUMMARY"
# With --profile: where the tuned step's time goes (an H200's tuned step once took 0.84 s of
# wall clock against about 0.57 s its kernels should add up to: its iBOT head's products missed
# the cache, BENCHMARKS.md; its "tuning cache:" line now says how many shapes took a near plan).
DINOSCOPE_CACHE_DIR="$WORK/tune" timeout 40 "$BIN" bench train --config vits14 --steps 3 \
  --profile > "$WORK/train_tuned.txt" 2>&1
cat "$WORK/train_tuned.txt" >> "$SUMMARY"
log "tune: the vits14 step's f16 products"
DINOSCOPE_CACHE_DIR="$WORK/tune" timeout "${TUNE_S:-90}" "$BIN" tune --config vits14 \
  --precision mixed --reps 3 > "$WORK/tune.txt" 2>&1
echo "tune exit $? (124: stopped at its budget; the lines before are complete)" >> "$SUMMARY"
head -70 "$WORK/tune.txt" >> "$SUMMARY"
fi

log "done"
rm -f "$WORK/dinoscope"
tar -czf "$OUT/device.tgz" -C "$WORK" .
