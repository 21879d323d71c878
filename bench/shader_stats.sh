#!/usr/bin/env bash
# What two GPU compilers make of every kernel, without a GPU: register use, spills, occupancy
# and instruction counts, per pipeline, from AMD's compiler (RADV's ACO, for an RX 7900 XTX)
# and from Mesa's NVIDIA compiler (NVK's NAK, for an RTX 30-series chip). Mesa's DRM shims give
# each driver a device with no hardware behind it: pipelines compile as on the real GPU, and
# dispatches do nothing (so the results the commands print are meaningless; only the compiler
# statistics count).
#
#   bench/shader_stats.sh [radv|nak|both] [-- DINOSCOPE ARGS…]
#   CHECK=1 bench/shader_stats.sh both -- selftest     (CI: fails if a kernel spills; see
#                                                       KNOWN_SPILLS in shader_stats.py)
#
# By default it runs `dinoscope selftest` (every kernel the runtime has, at the test sizes) and
# `dinoscope bench kernels --quick --tiles --general` (the benchmark sizes: HEAD_DIM 64 attention,
# every matmul tile), and writes bench/out/shader_stats_{radv,nak}.md (OUT=… to change). NAK is
# not NVIDIA's own compiler and RDNA3 is not an H200; the figures show spills, register
# pressure and occupancy limits a kernel's source causes, not speed.
# Needs root: it uses .ci/coop_root.sh's Debian 13 root (Mesa 26.1) and adds mesa-drm-shim to it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=/var/tmp/dinoscope-trixie
OUT="${OUT:-bench/out}"
mkdir -p "$OUT"
which="${1:-both}"
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
runs=("$@")

[ -e "$root/usr/share/vulkan/icd.d/lvp_icd.json" ] || .ci/coop_root.sh -- true
if [ ! -e "$root/usr/lib/x86_64-linux-gnu/libamdgpu_noop_drm_shim.so" ]; then
  chroot "$root" apt-get update -qq
  chroot "$root" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq -t trixie-backports mesa-drm-shim >/dev/null
fi
[ -x target/release/dinoscope ] || cargo build --release --quiet

lib=/usr/lib/x86_64-linux-gnu
icd=/usr/share/vulkan/icd.d
# The shader caches are off so that every pipeline is compiled (and reported) on every run; the
# cooperative-matrix probe is skipped, since a shim runs no dispatch and the failed probe would
# leave those kernels uncompiled.
common=(MESA_SHADER_CACHE_DISABLE=true RUST_LOG=dinoscope=debug DINOSCOPE_COOP_PROBE=0)
# Only the pipeline names and the statistics are kept.
keep='compiling pipeline|^(VGPRs|Spilled VGPRs|Scratch size|Subgroups per SIMD|Instructions|LDS size|Num GPRs|Spills to (mem|reg)|Max warps/SM|Instruction count|Static cycle count|SLM size):'

# Runs the dinoscope command lines given (one argument each, already quoted) side by side in one
# call of the root (each call mounts and unmounts it, so calls must not overlap), and appends their
# statistics lines to $log. Each one's output goes to a file and is filtered afterwards: NAK prints
# its IR in millions of small writes (about 2 GB for the selftest), and each write into a pipe
# would wake the filter, which made the run 1.8 times as long.
stats_of() {
  local log="$1" dir i=0
  shift
  dir="$(mktemp -d "$root/tmp/shader_stats.XXXXXX")"
  for cmd in "$@"; do
    echo "$cmd >${dir#"$root"}/$i.out 2>&1 &" >>"$dir/run.sh"
    i=$((i + 1))
  done
  echo wait >>"$dir/run.sh"
  .ci/coop_root.sh -- bash "${dir#"$root"}/run.sh" || true
  for ((j = 0; j < i; j++)); do LC_ALL=C grep -aE "$keep" "$dir/$j.out" >>"$log" || true; done
  rm -rf "$dir"
}
# Raw output an interrupted run left behind (gigabytes for NAK); runs never overlap (see above).
rm -rf "$root"/tmp/shader_stats.*
# The selftest's product checks compile about half of its IR and the other checks the rest: as
# two processes they take one core each.
source .ci/selftest_halves.sh
run_with() {
  local name="$1"
  shift
  local log="$OUT/shader_stats_$name.log"
  : > "$log"
  local env_cmd=(env "${common[@]}" "$@" target/release/dinoscope)
  line() { printf '%q ' "${env_cmd[@]}" "$@"; }
  if [ ${#runs[@]} -eq 0 ] || [ "${runs[*]}" = selftest ]; then
    stats_of "$log" "$(line selftest "${products[@]}")" "$(line selftest "${products[@]/--only/--skip}")"
  else
    stats_of "$log" "$(line "${runs[@]}")"
  fi
  if [ ${#runs[@]} -eq 0 ]; then
    stats_of "$log" "$(line bench kernels --quick --tiles --general --reps 1)"
  fi
  local check=()
  [ "${CHECK:-0}" = 1 ] && check=(--check)
  python3 bench/shader_stats.py "$log" "${check[@]}" > "$OUT/shader_stats_$name.md" || failed=1
  echo "$OUT/shader_stats_$name.md: $(($(wc -l < "$OUT/shader_stats_$name.md") - 2)) pipelines"
}
failed=0
if [ "$which" = radv ] || [ "$which" = both ]; then
  run_with radv LD_PRELOAD=$lib/libamdgpu_noop_drm_shim.so AMDGPU_GPU_ID=navi31 \
    VK_DRIVER_FILES=$icd/radeon_icd.json RADV_DEBUG=shaderstats
fi
if [ "$which" = nak ] || [ "$which" = both ]; then
  # 0x172: GA102. The shim offers no newer NVIDIA chip to NVK here.
  run_with nak LD_PRELOAD=$lib/libnouveau_noop_drm_shim.so NOUVEAU_CHIPSET=0x172 \
    VK_DRIVER_FILES=$icd/nouveau_icd.json NAK_DEBUG=print
fi
exit "$failed"
