#!/usr/bin/env bash
# Builds the npm package into wasm/pkg (`./dev wasm`): jobs-wasm for wasm32-unknown-unknown,
# wasm-bindgen (ESM, --target web), wasm-opt -Oz, then the package files from wasm/npm/; the JS a
# browser loads is minified with esbuild.
# Nothing is downloaded at build time beyond the pinned tools, installed once (only if missing)
# under $JOBS_CACHE/tools: wasm-bindgen-cli from crates.io (exactly the crate's version; no
# wasm-pack, which fetches its own), binaryen and esbuild from npm (Debian's binaryen 108 produced
# a module that failed to load).
#
#   scripts/wasm.sh            build wasm/pkg
#   scripts/wasm.sh tools      only install the tools (also puts wasm-bindgen-test-runner in place)
#
# Environment: JOBS_CACHE (default ~/.cache/jobs), CARGO_TARGET_DIR (default $JOBS_CACHE/target).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export JOBS_CACHE="${JOBS_CACHE:-$HOME/.cache/jobs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$JOBS_CACHE/target}"
export npm_config_cache="${npm_config_cache:-$JOBS_CACHE/npm}"
TOOLS="$JOBS_CACHE/tools"
BINARYEN_VERSION=132.0.0
ESBUILD_VERSION=0.28.2
# The wasm-bindgen CLI must be exactly the crate's version: read the pin from the manifest.
WASM_BINDGEN_VERSION="$(sed -n 's/^wasm-bindgen = { version = "=\([0-9.]*\)".*/\1/p' "$ROOT/wasm/Cargo.toml")"
[[ -n $WASM_BINDGEN_VERSION ]] || { echo "wasm.sh: no exact wasm-bindgen pin in wasm/Cargo.toml" >&2; exit 1; }
PKG="$ROOT/wasm/pkg"
NAME=jobs_wasm
# Features rustc enables for wasm32-unknown-unknown (1.82+ / 1.87+); wasm-opt must accept them.
WASM_FEATURES=(--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-mutable-globals --enable-reference-types --enable-multivalue)

# Code size at no measured speed cost (BENCHMARKS.md "## WASM", 2026-11-27): no loop unrolling,
# and LLVM's inlining threshold at 100 instead of opt-level 3's 250 (-2.8 KB gzipped together;
# 50 saved 0.6 KB more but cost 6%). Only this build: tests and clippy for wasm32 do not need them.
WASM_RUSTFLAGS="-C llvm-args=-unroll-threshold=0 -C llvm-args=-inline-threshold=100"
# std built with the package by a pinned nightly (-Zbuild-std, std's optimize_for_size), panics a
# bare trap (-Cpanic=immediate-abort): -3.4 KB gzipped, speed unchanged (BENCHMARKS.md "## WASM").
# Nothing visible is lost: on wasm32 std prints a panic's message nowhere, so a panic was already
# only a RuntimeError "unreachable". Installed once (~10 s); without it the build uses stable.
NIGHTLY=nightly-2026-05-20
NIGHTLY_FLAGS=(-Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size)
NIGHTLY_RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort"

# shellcheck source=scripts/checkouts.sh
source "$ROOT/scripts/checkouts.sh"
log() { printf 'wasm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ensure_tools() {
  if [[ "$("$TOOLS/bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]]; then
    log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION into $TOOLS (a few minutes, once)"
    # Not --locked: its lockfile pins a dependency version that is no longer on crates.io.
    # Own target dir: the shared one may be locked by a workspace build.
    env -u CARGO_TARGET_DIR cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" \
      --root "$TOOLS" --target-dir "$JOBS_CACHE/tools-build" >&2
  fi
  # Both in one install: a later `npm install --no-save` of one would prune the other.
  if [[ "$("$TOOLS/npm/node_modules/.bin/wasm-opt" --version 2>/dev/null)" != *"version ${BINARYEN_VERSION%%.*}"* ||
    "$("$TOOLS/npm/node_modules/.bin/esbuild" --version 2>/dev/null)" != "$ESBUILD_VERSION" ]]; then
    log "installing binaryen $BINARYEN_VERSION and esbuild $ESBUILD_VERSION from npm into $TOOLS/npm"
    mkdir -p "$TOOLS/npm"
    npm install --prefix "$TOOLS/npm" --no-audit --no-fund --no-save \
      "binaryen@$BINARYEN_VERSION" "esbuild@$ESBUILD_VERSION" >&2
  fi
  if ! rustup run "$NIGHTLY" rustc --print sysroot >/dev/null 2>&1 ||
    [[ ! -d "$(rustup run "$NIGHTLY" rustc --print sysroot)/lib/rustlib/src/rust/library" ]]; then
    log "installing $NIGHTLY with rust-src (for -Zbuild-std)"
    rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src >&2 ||
      log "could not install $NIGHTLY: the package will be built with stable (+3.4 KB gzipped)"
  fi
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown >&2
  fi
}

cargo_build() {
  if [[ -d "$(rustup run "$NIGHTLY" rustc --print sysroot 2>/dev/null)/lib/rustlib/src/rust/library" ]]; then
    RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$WASM_RUSTFLAGS $NIGHTLY_RUSTFLAGS" \
      cargo "+$NIGHTLY" build -p jobs-wasm --target wasm32-unknown-unknown --profile wasm --locked "${NIGHTLY_FLAGS[@]}"
  else
    RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$WASM_RUSTFLAGS" \
      cargo build -p jobs-wasm --target wasm32-unknown-unknown --profile wasm --locked
  fi
}

build() {
  local wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm/$NAME.wasm" version
  local dir="$CARGO_TARGET_DIR/wasm32-unknown-unknown"
  # Another checkout's build sharing CARGO_TARGET_DIR can look fresh here and be linked in (see
  # scripts/checkouts.sh; ./dev does this too, this covers a direct call). Then the module is
  # checked for this checkout's crate folder, and rebuilt when it names another.
  forget_other_checkouts
  local path="$ROOT/wasm/package.json" pre=""
  # The module stores the crate's package.json path after its length (one byte below 128):
  # that byte is part of the match, as /x/work/main also ends in /work/main.
  if ((${#path} < 128)); then printf -v pre '\\x%02x' "${#path}"; fi
  ours() { [[ -f $wasm ]] && grep -qaF "$(printf "$pre")$path" "$wasm"; }
  forget() { rm -rf "$dir"/*/.fingerprint/jobs-core-* "$dir"/*/.fingerprint/jobs-wasm-*; }
  log "cargo build -p jobs-wasm --target wasm32-unknown-unknown --profile wasm ($WASM_RUSTFLAGS; $NIGHTLY if installed)"
  cargo_build
  if ! ours; then
    log "the module names another checkout: rebuilding jobs-core and jobs-wasm"
    forget
    cargo_build
    ours || die "the module still names another checkout: rm -rf $dir and retry"
  fi
  out="$(mktemp -d "$ROOT/wasm/.pkg.XXXXXX")"
  trap 'rm -rf "$out"' EXIT
  chmod 755 "$out"
  "$TOOLS/bin/wasm-bindgen" --target web --out-dir "$out" --out-name "$NAME" "$wasm"
  # --low-memory-unused: addresses below 1024 are never used (rustc puts the 1 MB stack first and
  # the data above it; the rules' recursion is bounded far below that), so constant address
  # offsets fold into loads and stores: -0.3 KB gzipped. Then the control flow flattened and
  # rebuilt by the relooper and -Oz again, the whole sequence repeated until the module stops
  # shrinking (--converge): -0.1 KB gzipped, the same speed (ab.js), ~6 s more.
  "$TOOLS/npm/node_modules/.bin/wasm-opt" -Oz --flatten --rereloop -Oz --converge --low-memory-unused \
    "${WASM_FEATURES[@]}" --strip-debug --strip-producers --strip-target-features \
    -o "$out/${NAME}_bg.opt.wasm" "$out/${NAME}_bg.wasm"
  mv "$out/${NAME}_bg.opt.wasm" "$out/${NAME}_bg.wasm"
  cp "$ROOT"/wasm/npm/* "$out/"
  # The JS a browser loads, minified (comments, whitespace, local names): -1.4 KB gzipped. Its
  # types are in the .d.ts files; the glue keeps the comment that points editors and tsc there.
  local js glue
  for js in "$out/$NAME.js" "$out/index.js" "$out"/snippets/*/src/*.js; do
    glue=()
    # The glue's import object names the snippet once per group of imports from it, each an
    # `import * as` of the same module (the same namespace object): esbuild's duplicate-key
    # warning about that is silenced there, and only there.
    [[ $js == "$out/$NAME.js" ]] &&
      glue=("--banner:js=/* @ts-self-types=\"./$NAME.d.ts\" */" --log-override:duplicate-object-key=silent)
    "$TOOLS/npm/node_modules/.bin/esbuild" --minify --format=esm --log-level=warning "${glue[@]}" "$js" \
      --outfile="$js.min"
    mv "$js.min" "$js"
  done
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)"
  sed -i "s/\"version\": \"0.0.0\"/\"version\": \"$version\"/" "$out/package.json"
  rm -rf "$PKG"
  mv "$out" "$PKG"
  log "built $PKG: $(sizes)"
}

# Raw and gzipped bytes of what a browser loads: the wasm, the entry and the JS glue (with its
# snippet).
sizes() {
  local f raw gz total=0
  for f in "${NAME}_bg.wasm" index.js "$NAME.js" $(cd "$PKG" && ls snippets/*/src/*.js); do
    raw=$(wc -c <"$PKG/$f"); gz=$(gzip -9 -c "$PKG/$f" | wc -c); total=$((total + gz))
    printf '%s %s B (gzip -9 %s B); ' "$f" "$raw" "$gz"
  done
  printf 'wasm+glue gzipped %s B\n' "$total"
}

case "${1:-build}" in
  tools) ensure_tools ;;
  build) ensure_tools; build ;;
  sizes) sizes ;;
  *) echo "usage: scripts/wasm.sh [build|tools|sizes]" >&2; exit 2 ;;
esac
