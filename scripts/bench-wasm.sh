#!/usr/bin/env bash
# The WASM benchmark (`./dev bench wasm`; not run in CI): validateJob(string) from the built npm
# package vs ajv (allErrors), valibot and zod on the same 10,000 generated jobs, in one Node
# process and inside Chromium (Playwright page.evaluate), plus the package's gzipped size and
# twiggy's top items. Numbers go to BENCHMARKS.md "## WASM" with the machine and these commands.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export JOBS_CACHE="${JOBS_CACHE:-$HOME/.cache/jobs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$JOBS_CACHE/target}"
export npm_config_cache="${npm_config_cache:-$JOBS_CACHE/npm}"
ROUNDS="${BENCH_ROUNDS:-8}"

"$ROOT/scripts/wasm.sh" >&2
cd "$ROOT/wasm"
[[ -d node_modules/esbuild ]] || npm ci --no-audit --no-fund --prefer-offline >/dev/null
command -v chromium >/dev/null || { echo "bench-wasm: needs chromium (apt-get install chromium)" >&2; exit 1; }

echo "== wasm: machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== wasm: node bench/node.js --rounds $ROUNDS"
node bench/node.js --rounds "$ROUNDS"
echo "== wasm: node bench/browser.js --rounds $ROUNDS"
node bench/browser.js --rounds "$ROUNDS"
echo "== wasm: where the formats disagree (node bench/disagree.js)"
node bench/disagree.js
echo "== wasm: size (scripts/wasm.sh sizes)"
"$ROOT/scripts/wasm.sh" sizes
if [[ -x $JOBS_CACHE/tools/bin/twiggy ]]; then
  # Names survive in wasm-bindgen's output before wasm-opt strips them.
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  "$JOBS_CACHE/tools/bin/wasm-bindgen" --target web --out-dir "$tmp" \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm/jobs_wasm.wasm"
  echo "== wasm: twiggy top -n 15 (before wasm-opt; names kept)"
  "$JOBS_CACHE/tools/bin/twiggy" top -n 15 "$tmp/jobs_wasm_bg.wasm"
else
  echo "(twiggy not installed: cargo install twiggy --root $JOBS_CACHE/tools)"
fi
