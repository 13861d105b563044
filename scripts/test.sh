#!/usr/bin/env bash
# Every test: formatting, lints, the wasm32 build of jobs-core, then the whole workspace against
# real PostgreSQL and search engines started here (and stopped on exit). What .ci/run calls.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export JOBS_CACHE="${JOBS_CACHE:-$HOME/.cache/jobs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$JOBS_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
ENGINE="${JOBS_TEST_ENGINE:-both}"

step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

# The shared target dir only grows (every build of every checkout adds files). Past 20 GB, drop
# its incremental caches, the bulk of what is stale: 19 of 46 GB on 2026-11-27, when a run
# stopped with "No space left on device" on this shared disk.
if [ -d "$CARGO_TARGET_DIR" ] && [ "$(du -s --block-size=1G "$CARGO_TARGET_DIR" | cut -f1)" -gt 20 ]; then
  step "target dir over 20 GB: removing incremental caches"
  rm -rf "$CARGO_TARGET_DIR"/*/incremental "$CARGO_TARGET_DIR"/*/*/incremental
fi

step "toolchain"
rustup show active-toolchain
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "jobs-core for wasm32-unknown-unknown"
cargo build -p jobs-core --target wasm32-unknown-unknown --release --locked

# The arm64 Lambda build (what template.yaml deploys), tested under qemu (lambda/tests/
# api_lambda.rs, arm64_*). JOBS_TEST_ARM64: 1 always, 0 never, unset: in CI, and locally once a
# build exists, so the binaries tested are never older than the source (`./dev lambda-build`
# is incremental: ~2 s unchanged, 3-5 min after a change to core/ or lambda/, ~11 min cold).
ARM64_DIR="$CARGO_TARGET_DIR/lambda-arm64"
case "${JOBS_TEST_ARM64:-auto}" in
  1) arm64=1 ;;
  0) arm64=0 ;;
  *) if [ "${CI:-}" = true ] || [ -x "$ARM64_DIR/jobs-api/bootstrap" ]; then arm64=1; else arm64=0; fi ;;
esac
if [ "$arm64" = 1 ]; then
  step "arm64 Lambda build (./dev lambda-build)"
  "$ROOT/scripts/lambda-build.sh"
  step "arm64 Lambda binaries: tested under qemu-aarch64 (built $(date -r "$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/jobs-api" +'%F %T'))"
  if ! command -v qemu-aarch64 >/dev/null; then
    env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q -y install qemu-user >/dev/null
  fi
  export JOBS_LAMBDA_ARM64_DIR="$ARM64_DIR"
fi

step "services: postgres + $ENGINE"
running_services() { "$ROOT/scripts/services.sh" status 2>/dev/null | awk '$2 == "running" { printf " %s", $1 }'; }
started_services=0
if [ -z "${DATABASE_URL:-}" ]; then
  # Stop at the end only what this run started: services already running (after `./dev up`,
  # say) belong to someone else, each of them (Postgres, either engine).
  running_before="$(running_services) "
  started_services=1
fi
cleanup() {
  [ "$started_services" = 1 ] || return 0
  local s pg=0 os=0 es=0
  for s in $(running_services); do
    case "$running_before" in *" $s "*) continue ;; esac
    case "$s" in postgres) pg=1 ;; opensearch) os=1 ;; elasticsearch) es=1 ;; esac
  done
  local -a stop=()
  if [ "$os$es" = 11 ]; then stop+=(--engine both)
  elif [ "$os" = 1 ]; then stop+=(--engine opensearch)
  elif [ "$es" = 1 ]; then stop+=(--engine elasticsearch); fi
  if [ "$pg" = 1 ]; then stop+=(--postgres); fi
  if [ "${#stop[@]}" -gt 0 ]; then "$ROOT/scripts/services.sh" stop "${stop[@]}" || true; fi
}
# Set before the start, so a start that fails half way stops what it did start.
trap cleanup EXIT
if [ "$started_services" = 1 ]; then
  "$ROOT/scripts/services.sh" start --engine "$ENGINE"
  eval "$("$ROOT/scripts/services.sh" env)"
fi
echo "DATABASE_URL=$DATABASE_URL SEARCH_URL=${SEARCH_URL:-} OPENSEARCH_URL=${OPENSEARCH_URL:-} ELASTICSEARCH_URL=${ELASTICSEARCH_URL:-}"

step "cargo test --workspace"
cargo test --workspace --locked --no-fail-fast

step "WASM package: Node, tsc, Chromium (wasm_bindgen_test), demo page (Playwright)"
"$ROOT/scripts/test-wasm.sh"

step "python tools: cfn-lint, schemathesis (venv in \$JOBS_CACHE)"
VENV="$JOBS_CACHE/venv"
if ! "$VENV/bin/cfn-lint" --version 2>/dev/null | grep -q '1\.58\.0' ||
   ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q '4\.32\.5'; then
  python3 -m venv "$VENV" 2>/dev/null || { apt-get install -y -q python3-venv >/dev/null && python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install -q 'cfn-lint==1.58.0' 'schemathesis==4.32.5'
fi

step "SAM template: cfn-lint"
"$VENV/bin/cfn-lint" template.yaml

step "API contract: schemathesis against jobsctl serve (no 5xx, every response as the OpenAPI says)"
cargo build --locked -p jobs-lambda --bin jobsctl
"$ROOT/scripts/api-contract.sh" "$CARGO_TARGET_DIR/debug/jobsctl" "$VENV/bin/schemathesis"
# Once more with Elasticsearch answering the searches (~15 s), when it runs.
if [[ -n ${ELASTICSEARCH_URL:-} && ${ELASTICSEARCH_URL} != "${SEARCH_URL:-}" ]]; then
  SEARCH_URL="$ELASTICSEARCH_URL" "$ROOT/scripts/api-contract.sh" "$CARGO_TARGET_DIR/debug/jobsctl" "$VENV/bin/schemathesis"
fi

step "done"
