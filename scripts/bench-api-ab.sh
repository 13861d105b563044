#!/usr/bin/env bash
# Two builds of `jobsctl serve` side by side on create-job: each round runs `api_bench create`
# (8 connections; HTTP against the store alone in alternating 2 s rounds, 10 s each) against the
# base build, this build at RUST_LOG=warn and this build at RUST_LOG=info, in an order that
# turns around every round, and prints each HTTP/store ratio.
#
#   scripts/bench-api-ab.sh BASE_JOBSCTL [ROUNDS]     (a release jobsctl built from another commit)
#
# Uses the running services (DATABASE_URL), a fresh schema per run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BASE="${1:?usage: bench-api-ab.sh BASE_JOBSCTL [ROUNDS]}"
ROUNDS="${2:-4}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${JOBS_CACHE:-$HOME/.cache/jobs}/target}"
[[ -n ${DATABASE_URL:-} ]] || eval "$("$ROOT/scripts/services.sh" env)"
cargo build --release --locked -q -p jobs-lambda --bin jobsctl --example api_bench
NEW="$CARGO_TARGET_DIR/release/jobsctl"
BENCH="$CARGO_TARGET_DIR/release/examples/api_bench"
JOBS_JWT_SECRET="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export JOBS_JWT_SECRET
TOKEN="$("$NEW" token --user "$(cat /proc/sys/kernel/random/uuid)" --email bench@example.com)"
sep='?'
if [[ $DATABASE_URL == *\?* ]]; then sep='&'; fi

run() { # run LABEL JOBSCTL RUST_LOG
  local schema log pid url serve=""
  schema="bench_$(date +%s%N)_$$"
  log="$(mktemp)"
  "$NEW" migrate --schema "$schema" >/dev/null
  url="$DATABASE_URL${sep}options=-csearch_path%3D$schema"
  env DATABASE_URL="$url" SEARCH_URL= RUST_LOG="$3" "$2" serve --addr 127.0.0.1:0 --pool 8 \
    --web-dir /nonexistent --pkg-dir /nonexistent >"$log" 2>/dev/null &
  pid=$!
  for _ in $(seq 1 100); do
    serve="$(sed -n 's/^jobsctl serve: listening on \(http:[^ ]*\)$/\1/p' "$log")"
    [[ -n $serve ]] && break
    sleep 0.1
  done
  [[ -n $serve ]] || { kill "$pid"; echo "$1: serve did not start" >&2; exit 1; }
  local ratio
  ratio="$("$BENCH" create --url "$serve" --token "$TOKEN" --schema "$schema" --seconds 10 --connections 8 |
    sed -n 's/^| HTTP \/ store | \([0-9.]*\).*/\1/p')"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -f "$log"
  echo "$1 $ratio"
}

echo "round label http/store"
for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2)); then order="base new new-info"; else order="new-info new base"; fi
  for v in $order; do
    case $v in
      base) echo "$round $(run base "$BASE" warn)" ;;
      new) echo "$round $(run new "$NEW" warn)" ;;
      new-info) echo "$round $(run new-info "$NEW" info)" ;;
    esac
  done
done
