#!/usr/bin/env bash
# Builds the browser app into web/dist: the wasm module (WebGPU only), its JS glue, the page, and
# the golden fixtures the browser test loads. Installs wasm-bindgen-cli (matching Cargo.lock) when
# missing, and runs wasm-opt when it is on the PATH (npm's binaryen) at WASM_OPT_LEVEL (-O2 by
# default; -O1 takes a third of the time for a module about 6% larger).
#   web/build.sh            the tools when missing, then web/dist
#   web/build.sh --tools    only the tools (CI installs them beside other work)
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
if ! command -v wasm-bindgen >/dev/null || [[ "$(wasm-bindgen --version)" != *"$version"* ]]; then
  echo "installing wasm-bindgen-cli $version (two minutes, once)"
  # Unoptimized, it builds in half the time and still binds the module in seconds; --force, as
  # a binary deleted by hand still counts as installed.
  cargo install --debug --force wasm-bindgen-cli --version "$version"
fi
[ "${1:-}" != --tools ] || exit 0
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo build --release --target wasm32-unknown-unknown -p dinoscope-web
rm -rf web/dist
mkdir -p web/dist/fixtures/tiny_dinov2 web/dist/fixtures/tiny_dinov3
wasm-bindgen --target web --no-typescript --out-dir web/dist \
  target/wasm32-unknown-unknown/release/dinoscope_web.wasm
opt=$(command -v wasm-opt || true)
[ -n "$opt" ] || [ ! -x web/test/node_modules/.bin/wasm-opt ] || opt=web/test/node_modules/.bin/wasm-opt
if [ -n "$opt" ]; then
  before=$(stat -c %s web/dist/dinoscope_web_bg.wasm)
  "$opt" "${WASM_OPT_LEVEL:--O2}" --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    web/dist/dinoscope_web_bg.wasm -o web/dist/dinoscope_web_bg.wasm
  echo "wasm-opt: $before -> $(stat -c %s web/dist/dinoscope_web_bg.wasm) bytes"
fi
cp web/index.html web/dist/
cp tests/fixtures/manifest.json assets/images/chelsea.png web/dist/fixtures/
for m in tiny_dinov2 tiny_dinov3; do
  cp tests/fixtures/$m/{config.json,model.safetensors,io.safetensors} web/dist/fixtures/$m/
done
ls -l web/dist/dinoscope_web_bg.wasm
