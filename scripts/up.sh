#!/usr/bin/env bash
# `./dev up`: everything running locally on a fresh machine. Starts PostgreSQL and OpenSearch
# (installed if missing, see scripts/services.sh), migrates, builds the demo page's package if it
# is missing, seeds a few demo jobs, prints the URLs and a token, and runs `jobsctl serve` (the
# API, the sync loop and the page) in the foreground until Ctrl-C. The services keep running
# afterwards (`./dev services stop` stops them).
#
# Environment: JOBS_ADDR (default 127.0.0.1:8080), JOBS_ENGINE (opensearch|elasticsearch|none,
# default opensearch), JOBS_CACHE (default ~/.cache/jobs; the token secret is kept there).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export JOBS_CACHE="${JOBS_CACHE:-$HOME/.cache/jobs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$JOBS_CACHE/target}"
ADDR="${JOBS_ADDR:-127.0.0.1:8080}"
ENGINE="${JOBS_ENGINE:-opensearch}"
# The demo identity: a user in one workspace (fixed, so a saved token keeps working).
DEMO_USER=3f0f7a4e-5b1c-4d2e-8f90-a1b2c3d4e5f6
DEMO_WORKSPACE=7c9e6679-7425-40de-944b-e07fc1f90ae7

log() { printf 'up: %s\n' "$*" >&2; }

command -v cargo >/dev/null || { log "cargo is missing: install Rust (https://rustup.rs)"; exit 1; }
command -v curl >/dev/null || { log "curl is missing: apt-get install -y curl"; exit 1; }

log "services: postgres + $ENGINE"
"$ROOT/scripts/services.sh" start --engine "$ENGINE"
eval "$("$ROOT/scripts/services.sh" env --engine "$ENGINE")"
if [[ $ENGINE == none ]]; then unset SEARCH_URL; fi

log "building jobsctl (release)"
cargo build --release --locked -p jobs-lambda --bin jobsctl
JOBSCTL="$CARGO_TARGET_DIR/release/jobsctl"

"$JOBSCTL" migrate

if [[ ! -f wasm/pkg/package.json && -x scripts/wasm.sh ]]; then
  log "building the demo page's package (wasm/pkg)"
  "$ROOT/scripts/wasm.sh" || log "could not build wasm/pkg; the API works without it (./dev wasm to retry)"
fi

# One secret per machine, so tokens survive restarts.
SECRET_FILE="$JOBS_CACHE/jwt-secret"
if [[ ! -s $SECRET_FILE ]]; then
  mkdir -p "$JOBS_CACHE"
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SECRET_FILE")
fi
JOBS_JWT_SECRET="$(cat "$SECRET_FILE")"
export JOBS_JWT_SECRET
TOKEN="$("$JOBSCTL" token --user "$DEMO_USER" --email demo@example.com --workspace "$DEMO_WORKSPACE" --ttl 2592000)"

# Something already on the address (an earlier `./dev up`, another server) would answer the
# health check below in our server's place.
HOST="${ADDR%:*}" && HOST="${HOST#[}" && HOST="${HOST%]}"
if (exec 3<>"/dev/tcp/$HOST/${ADDR##*:}") 2>/dev/null; then
  log "something already listens on $ADDR (an earlier ./dev up?): stop it, or set JOBS_ADDR=127.0.0.1:PORT"
  exit 1
fi
"$JOBSCTL" serve --addr "$ADDR" &
SERVE_PID=$!
trap 'kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
BASE="http://$ADDR"
up=""
# serve gives the engine up to 10 s before it listens (searches use Postgres meanwhile).
for _ in $(seq 1 400); do
  curl -fsS "$BASE/v1/health" >/dev/null 2>&1 && { up=1; break; }
  kill -0 "$SERVE_PID" 2>/dev/null || { log "jobsctl serve exited"; exit 1; }
  sleep 0.1
done
[[ -n $up ]] || { log "jobsctl serve did not answer $BASE/v1/health within 40 s"; exit 1; }

api() { # api METHOD PATH [BODY] [IF-MATCH]
  local args=(-sS -o /dev/null -w '%{http_code}' -X "$1" "$BASE$2" -H "authorization: Bearer $TOKEN")
  if [[ -n ${3:-} ]]; then args+=(-H 'content-type: application/json' --data "$3"); fi
  if [[ -n ${4:-} ]]; then args+=(-H "if-match: \"$4\""); fi
  curl "${args[@]}"
}

log "seeding demo jobs (fixed ids: a second run finds them there)"
seed() { # seed ID TYPE PROJECT HOST ARCH METADATA [PATCH]
  local code
  code="$(api POST /v1/jobs "{\"id\":\"$1\",\"type\":\"$2\",\"project_name\":\"$3\",\"hostname\":\"$4\",\"arch\":\"$5\",\"workspace_id\":\"$DEMO_WORKSPACE\",\"metadata\":$6}")"
  if [[ $code == 201 && -n ${7:-} ]]; then
    api PATCH "/v1/jobs/$1" '{"status":"RUNNING"}' 0 >/dev/null
    api PATCH "/v1/jobs/$1" "$7" 1 >/dev/null
  elif [[ $code != 201 && $code != 409 ]]; then
    log "seeding $3 answered $code"
  fi
}
seed 0190f1a0-0000-7000-8000-000000000001 BUILD web-frontend ci-1.example.com arm64 '{"cpuCores":4,"memoryGb":8}' '{"status":"SUCCEEDED"}'
seed 0190f1a0-0000-7000-8000-000000000002 TEST web-frontend ci-2.example.com x86_64 '{"cpuCores":2,"buildDurationMs":93000}' '{"status":"FAILED","error_message":"3 tests failed: checkout.spec.ts"}'
seed 0190f1a0-0000-7000-8000-000000000003 DEPLOY payments-api deploy-1.example.com x86_64 '{"cpuCores":1}' '{"status":"SUCCEEDED"}'
seed 0190f1a0-0000-7000-8000-000000000004 BUILD payments-api ci-1.example.com arm64 '{"cpuCores":8,"dockerImageId":"sha256:9b2a6c1f0e8d7c6b5a4938271605f4e3d2c1b0a9f8e7d6c5b4a3928170605f4e"}'
seed 0190f1a0-0000-7000-8000-000000000005 SCAN search-indexer ci-3.example.com riscv64 '{"cpuCores":16,"memoryGb":64}' '{"status":"RUNNING"}'

cat <<EOF

  jobs is running (Ctrl-C stops the server; ./dev services stop stops Postgres and ${ENGINE}).

  page      $BASE/
  API       $BASE/v1/jobs           (OpenAPI: $BASE/v1/openapi.json, health: $BASE/v1/health)
  search    ${SEARCH_URL:-none (Postgres answers searches)}
  database  $DATABASE_URL

  token (user $DEMO_USER, workspace $DEMO_WORKSPACE, 30 days):
  $TOKEN

  try:  curl -s -H "authorization: Bearer \$TOKEN" '$BASE/v1/jobs?status=FAILED'
        more tokens: JOBS_JWT_SECRET=\$(cat $SECRET_FILE) $JOBSCTL token --user <uuid> [--workspace <uuid>]

EOF
wait "$SERVE_PID"
