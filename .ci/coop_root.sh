#!/usr/bin/env bash
# The cooperative-matrix phase. Debian 12's lavapipe (Mesa 22.3) has no cooperative matrices;
# Mesa 26.1's has them (f16 8×8×8, on CPUs with 256-bit vectors), and Debian 13's backports ship
# it. This builds a minimal Debian 13 root with that driver, binds the checkout into it at the
# same path, and runs the already built binaries there: the adapter report, the selftest's f16
# and cooperative-matrix cases (its f16 model checks then run on the cooperative-matrix matmul),
# the kernel tests for f16 and cooperative matrices, which must find the feature, and the
# mixed-precision training tests, whose f16 forward products then take that kernel too. lavapipe emulates the matrices, and f16
# products on CPU drivers take the plain kernels unless DINOSCOPE_COOP=1, which the root sets.
# Usage: .ci/coop_root.sh [ROOT] [-- COMMAND…]   (as root: it uses debootstrap, mount and chroot)
#   ROOT defaults to /var/tmp/dinoscope-trixie and is kept for the next call; with a COMMAND,
#   that runs in the root from the checkout instead of the checks, e.g.
#   .ci/coop_root.sh -- target/release/dinoscope bench kernels --quick --reps 3
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
root=/var/tmp/dinoscope-trixie
if [ $# -gt 0 ] && [ "$1" != "--" ]; then root="$1"; shift; fi
[ "${1:-}" = "--" ] && shift

if [ ! -e "$root/usr/share/vulkan/icd.d/lvp_icd.json" ]; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  # Built beside its place and moved there whole, so a run stopped part way leaves no root that
  # looks built. Nothing is ever mounted inside the part; a root left without its driver by a
  # run from before may hold this script's bind mounts (of /dev, and of the checkout), which go
  # first, and if one will not, the root is left alone.
  part="$root.part"
  rm -rf "$part"
  mkdir -p "$part"
  debootstrap --variant=minbase trixie "$part" http://deb.debian.org/debian >/dev/null
  echo "deb http://deb.debian.org/debian trixie-backports main" \
    > "$part/etc/apt/sources.list.d/backports.list"
  cp /etc/resolv.conf "$part/etc/resolv.conf"
  chroot "$part" apt-get update -qq
  chroot "$part" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq -t trixie-backports mesa-vulkan-drivers >/dev/null
  if [ -e "$root" ]; then
    inside() { findmnt -rn -o TARGET | awk -v r="$root/" 'index($0, r) == 1' | sort -r; }
    inside | while read -r m; do umount "$m" || true; done
    if [ -n "$(inside)" ]; then
      echo "coop_root: $root is incomplete and has mounts inside; unmount and remove it" >&2
      exit 1
    fi
    rm -rf "$root"
  fi
  mv "$part" "$root"
fi

mounted=()
bind() {
  mkdir -p "$root$2"
  if mountpoint -q "$root$2"; then
    # A run stopped part way leaves its mounts; one of a checkout removed since shows a deleted
    # folder, so a mount that is not of this very folder is replaced.
    [ "$(stat -c %d:%i "$1")" = "$(stat -c %d:%i "$root$2")" ] && return
    umount "$root$2"
  fi
  mount --bind "$1" "$root$2"
  mounted+=("$root$2")
}
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[$i]}" || true; done
}
trap cleanup EXIT
bind /dev /dev
bind /proc /proc
bind /sys /sys
bind "$repo" "$repo"

binary() {
  local b
  b="$(cargo test --release --test "$1" --no-run 2>&1 |
    grep -o "target/release/deps/$1-[0-9a-f]*" | head -1)"
  [ -n "$b" ] || { echo "coop_root: no $1 test binary" >&2; exit 1; }
  echo "$b"
}
in_root() { chroot "$root" env -C "$repo" DINOSCOPE_EXPECT_COOP=1 DINOSCOPE_COOP=1 HOME=/tmp "$@"; }
if [ $# -gt 0 ]; then
  in_root "$@"
  exit
fi

kernels="$(binary kernels)"
train="$(binary train)"
memory="$(binary memory)"
tune="$(binary tune)"
# target/release/dinoscope came with the test binaries (the same features; see .ci/run).

# Captured, then printed: `tee /dev/stderr` would reopen a log file that stderr points to and
# truncate it.
info="$(in_root target/release/dinoscope info)"
echo "$info"
grep -q "COOP_MATRIX     f16" <<<"$info" || {
  echo "coop_root: the adapter in $root offers no f16 cooperative matrices" >&2
  exit 1
}
# The attention kernels need the matrices at their subgroup size: without it they go untested.
! grep -q "not in attention" <<<"$info" || {
  echo "coop_root: the adapter in $root runs no attention on cooperative matrices" >&2
  exit 1
}
# The f16, cooperative-matrix and loss-scale cases; the rest ran on the host's lavapipe, and
# compiling their pipelines again with this LLVM took minutes of CI.
in_root target/release/dinoscope selftest --only f16 --only coop --only loss_scale
in_root "$kernels" f16 coop loss_scale --show-output
in_root "$train" mixed_precision --show-output
in_root "$memory" mixed --show-output
# The tuner times the cooperative-matrix kernel among the f16 products' candidates here.
in_root "$tune" --show-output
