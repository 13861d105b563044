#!/usr/bin/env bash
# Two builds of `jobsctl serve` side by side on create-job: each round runs `api_bench create`
# (8 connections; HTTP against the store alone in alternating 2 s rounds, 10 s each) against the
# base build, this build at RUST_LOG=warn and this build at RUST_LOG=info, in an order that
# turns around every round, and prints each HTTP/store ratio. Access lines go to /dev/null.
#
#   scripts/bench-api-ab.sh BASE_JOBSCTL [ROUNDS]     (a release jobsctl built from another commit)
#
# Uses the running services (DATABASE_URL, else `./dev services env`), a fresh schema per run.
set -euo pipefail
BASE="$(realpath "${1:?usage: bench-api-ab.sh BASE_JOBSCTL [ROUNDS]}")"
ROUNDS="${2:-4}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
die() { echo "bench-api-ab: $*" >&2; exit 1; }
[[ -x $BASE ]] || die "$BASE is not an executable"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${JOBS_CACHE:-$HOME/.cache/jobs}/target}"
[[ -n ${DATABASE_URL:-} ]] || eval "$("$ROOT/scripts/services.sh" env)"
[[ -n ${DATABASE_URL:-} ]] || die "no DATABASE_URL and no local Postgres running (./dev services start)"
cargo build --release --locked -q -p jobs-lambda --bin jobsctl --example api_bench
NEW="$CARGO_TARGET_DIR/release/jobsctl"
BENCH="$CARGO_TARGET_DIR/release/examples/api_bench"
JOBS_JWT_SECRET="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export JOBS_JWT_SECRET
TOKEN="$("$NEW" token --user "$(cat /proc/sys/kernel/random/uuid)" --email bench@example.com)"
sep='?'
if [[ $DATABASE_URL == *\?* ]]; then sep='&'; fi

PID=""
LOG="$(mktemp)"
trap '[[ -n $PID ]] && kill "$PID" 2>/dev/null; rm -f "$LOG"' EXIT

RATIO=""
run() { # run JOBSCTL RUST_LOG: sets RATIO
  local schema url serve=""
  schema="bench_$(date +%s%N)_$$"
  "$NEW" migrate --schema "$schema" >/dev/null
  url="$DATABASE_URL${sep}options=-csearch_path%3D$schema"
  # stdout (the address line) to the log; the access lines (stderr) to /dev/null.
  env DATABASE_URL="$url" SEARCH_URL= RUST_LOG="$2" "$1" serve --addr 127.0.0.1:0 --pool 8 \
    --web-dir /nonexistent --pkg-dir /nonexistent >"$LOG" 2>/dev/null &
  PID=$!
  for _ in $(seq 1 100); do
    serve="$(sed -n 's/^jobsctl serve: listening on \(http:[^ ]*\)$/\1/p' "$LOG")"
    [[ -n $serve ]] && break
    sleep 0.1
  done
  [[ -n $serve ]] || { cat "$LOG" >&2; die "$1 serve did not start (run it by hand to see why)"; }
  local out
  out="$("$BENCH" create --url "$serve" --token "$TOKEN" --schema "$schema" --seconds 10 --connections 8)"
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
  RATIO="$(sed -n 's/^| HTTP \/ store | \([0-9.]*\).*/\1/p' <<<"$out")"
  [[ -n $RATIO ]] || { echo "$out" >&2; die "no ratio in api_bench's output"; }
}

echo "round label http/store"
for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2)); then order="base new new-info"; else order="new-info new base"; fi
  for v in $order; do
    case $v in
      base) run "$BASE" warn ;;
      new) run "$NEW" warn ;;
      new-info) run "$NEW" info ;;
    esac
    echo "$round $v $RATIO"
  done
done
