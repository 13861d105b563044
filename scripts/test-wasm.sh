#!/usr/bin/env bash
# The WASM package's tests (a step of scripts/test.sh, after the cargo tests): builds wasm/pkg,
# runs the corpus and the exports in Node (node --test), type-checks a typed usage file (tsc),
# lints jobs-wasm for wasm32, runs the wasm_bindgen_test tests in headless Chromium, and drives
# the demo page with Playwright against a real `jobsctl serve` (DATABASE_URL/SEARCH_URL from the
# environment). Installs only what is missing: Debian's chromium + chromium-driver (apt-get),
# the pinned wasm-bindgen-cli and binaryen (scripts/wasm.sh), node modules (npm ci, cached).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export JOBS_CACHE="${JOBS_CACHE:-$HOME/.cache/jobs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$JOBS_CACHE/target}"
export npm_config_cache="${npm_config_cache:-$JOBS_CACHE/npm}"
export PATH="$JOBS_CACHE/tools/bin:$PATH"

step() { printf '\n== wasm: %s (%s)\n' "$*" "$(date +%T)"; }

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  step "apt-get install chromium chromium-driver"
  if [[ $EUID -ne 0 ]]; then
    echo "test-wasm: chromium and chromedriver are missing: sudo apt-get install -y chromium chromium-driver" >&2
    exit 1
  fi
  apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q -y)
  "${apt[@]}" update >/dev/null
  "${apt[@]}" install chromium chromium-driver >/dev/null
fi

step "build wasm/pkg (scripts/wasm.sh)"
"$ROOT/scripts/wasm.sh"

cd "$ROOT/wasm"
# npm ci only when package-lock.json changed since the last install here.
stamp="node_modules/.jobs-lock-sha"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  step "npm ci (cache: $npm_config_cache)"
  npm ci --no-audit --no-fund --prefer-offline >/dev/null
  echo "$want" >"$stamp"
fi

step "node --test: the corpus and the exports on the built package"
node --test js-test/

step "tsc --noEmit on a typed usage file"
./node_modules/.bin/tsc -p js-test/tsconfig.json

step "clippy jobs-wasm for wasm32 (-D warnings)"
cargo clippy -p jobs-wasm --target wasm32-unknown-unknown --all-targets --locked -- -D warnings

step "wasm_bindgen_test in headless Chromium"
CHROMEDRIVER="$(command -v chromedriver)" cargo test -p jobs-wasm --target wasm32-unknown-unknown --locked

step "demo page in Chromium (Playwright) against jobsctl serve"
cargo build --locked -p jobs-lambda --bin jobsctl
node --test e2e/
# Again with Elasticsearch behind the server, when it runs (./dev test starts both engines).
if [ -n "${ELASTICSEARCH_URL:-}" ] && [ "${ELASTICSEARCH_URL}" != "${SEARCH_URL:-}" ]; then
  step "demo page in Chromium (Playwright) against jobsctl serve on Elasticsearch"
  SEARCH_URL="$ELASTICSEARCH_URL" node --test e2e/
fi
