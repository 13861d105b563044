#!/usr/bin/env bash
# `./dev bench api`: the API and Lambda benchmarks (lambda/examples/api_bench.rs), printed as
# the Markdown tables BENCHMARKS.md keeps under "## API and Lambda":
#   1. create-job through `jobsctl serve` (8 keep-alive connections) beside the store alone
#      (8 tasks), Postgres only, same schema, same validation;
#   2. change-to-searchable lag through the API with write-through (needs SEARCH_URL);
#   3. the Lambda binaries (release): size, peak RSS, process start to first poll and to the
#      first answered event through a local Runtime API, per-invocation latency; jobs-api
#      reaches Postgres through the Data API driver and the local Data API server.
# Uses the running services (DATABASE_URL/SEARCH_URL) or starts Postgres + OpenSearch.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export JOBS_CACHE="${JOBS_CACHE:-$HOME/.cache/jobs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$JOBS_CACHE/target}"
SECONDS_PER_RUN="${BENCH_SECONDS:-10}"

started_services=0
if [[ -z ${DATABASE_URL:-} ]]; then
  "$ROOT/scripts/services.sh" start --engine opensearch >&2
  started_services=1
  eval "$("$ROOT/scripts/services.sh" env)"
fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ $started_services == 1 ]]; then "$ROOT/scripts/services.sh" stop >&2 || true; fi
}
trap cleanup EXIT

cargo build --release --locked -q -p jobs-lambda --bin jobsctl --bin jobs-api --bin jobs-sync --example api_bench
REL="$CARGO_TARGET_DIR/release"
JOBSCTL="$REL/jobsctl"
BENCH="$REL/examples/api_bench"
uuid() { cat /proc/sys/kernel/random/uuid; }

sep='?'
if [[ $DATABASE_URL == *\?* ]]; then sep='&'; fi
fresh_schema() { # a new, migrated schema per section (no backlog left over from the last one)
  schema="bench_$(date +%s%N)_$$"
  "$JOBSCTL" migrate --schema "$schema" >/dev/null
  SCHEMA_URL="$DATABASE_URL${sep}options=-csearch_path%3D$schema"
}
JOBS_JWT_SECRET="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export JOBS_JWT_SECRET
USER_ID="$(uuid)"
WS="$(uuid)"
TOKEN="$("$JOBSCTL" token --user "$USER_ID" --email bench@example.com --workspace "$WS")"

SERVE_URL=""
serve() { # serve [ENV=VALUE...]: starts jobsctl serve on the bench schema; sets SERVE_URL
  local log
  log="$(mktemp)"
  env DATABASE_URL="$SCHEMA_URL" RUST_LOG=warn "$@" "$JOBSCTL" serve --addr 127.0.0.1:0 --pool 8 \
    --web-dir /nonexistent --pkg-dir /nonexistent >"$log" 2>&1 &
  pids+=($!)
  SERVE_URL=""
  for _ in $(seq 1 100); do
    SERVE_URL="$(sed -n 's/^jobsctl serve: listening on \(http:[^ ]*\)$/\1/p' "$log")"
    [[ -n $SERVE_URL ]] && break
    sleep 0.1
  done
  [[ -n $SERVE_URL ]] || { cat "$log" >&2; exit 1; }
}
drop_alias() { # the indexes behind an alias, and its template
  local idx
  for idx in $(curl -fsS "$SEARCH_URL/_alias/$1*" 2>/dev/null | grep -o '"[^"]*":{"aliases"' | cut -d'"' -f2); do
    curl -fsS -X DELETE "$SEARCH_URL/$idx" >/dev/null 2>&1 || true
  done
  curl -fsS -X DELETE "$SEARCH_URL/_index_template/$1" >/dev/null 2>&1 || true
}
stop_serve() { kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -m), $(date -u +%F)"
echo
echo "### create-job: HTTP vs the store alone (Postgres only, no search)"
echo
fresh_schema
serve SEARCH_URL=
"$BENCH" create --url "$SERVE_URL" --token "$TOKEN" --schema "$schema" --seconds "$SECONDS_PER_RUN" --connections 8
stop_serve
echo
fresh_schema
if [[ -n ${SEARCH_URL:-} ]]; then
  echo "### a page of jobs with and without include=sync (the engine answers; the state from Postgres)"
  echo
  env DATABASE_URL="$SCHEMA_URL" SEARCH_ALIAS="bench-$schema" SEARCH_REPLICAS=0 "$JOBSCTL" sync --once >/dev/null
  serve SEARCH_URL="$SEARCH_URL" SEARCH_ALIAS="bench-$schema" SEARCH_REPLICAS=0
else
  echo "### a page of jobs with and without include=sync (Postgres answers: no engine)"
  echo
  serve SEARCH_URL=
fi
"$BENCH" list --url "$SERVE_URL" --token "$TOKEN" --seconds "$SECONDS_PER_RUN" --connections 4
stop_serve
if [[ -n ${SEARCH_URL:-} ]]; then drop_alias "bench-$schema"; fi
echo

if [[ -n ${SEARCH_URL:-} ]]; then
  echo "### change-to-searchable lag through the API (write-through to $(curl -fsS "$SEARCH_URL" | grep -o '"distribution" *: *"[a-z]*"\|"number" *: *"[0-9.]*"' | tr -d '" ' | tr '\n' ' '))"
  echo
  fresh_schema
  # the index first, so no search finds it missing (which would open the search breaker)
  env DATABASE_URL="$SCHEMA_URL" SEARCH_ALIAS="bench-$schema" SEARCH_REPLICAS=0 "$JOBSCTL" sync --once >/dev/null
  serve SEARCH_URL="$SEARCH_URL" SEARCH_ALIAS="bench-$schema" SEARCH_REPLICAS=0
  "$BENCH" lag --url "$SERVE_URL" --token "$TOKEN" --rate "${BENCH_LAG_RATE:-20}" --seconds "${BENCH_LAG_SECONDS:-20}"
  stop_serve
  drop_alias "bench-$schema"
  echo
fi

echo "### Lambda binaries (release, $(uname -m); stripped copies) under a local Runtime API"
echo
fresh_schema
event="$(mktemp)"
sed -e "s/__SUB__/$USER_ID/g" -e "s/__EMAIL__/bench@example.com/g" -e "s/__WS1__/$WS/g" -e "s/__WS2__/$(uuid)/g" \
  lambda/tests/data/apigw-v2-jwt-create.json >"$event"
stripped="$(mktemp -d)"
for b in jobs-api jobs-sync; do strip -o "$stripped/$b" "$REL/$b"; done
echo "| binary | size | peak RSS | start to first poll | start to first answer | p50 ms | p99 ms |"
echo "|---|---:|---:|---:|---:|---:|---:|"
# jobs-sync first, on an empty queue (its index made beforehand), so its first event measures
# start-up rather than a backlog; then jobs-api creating jobs through the Data API.
sync_env=(SEARCH_URL="${SEARCH_URL:-}" SEARCH_ALIAS="bench-$schema" SEARCH_REPLICAS=0)
if [[ -n ${SEARCH_URL:-} ]]; then env DATABASE_URL="$SCHEMA_URL" "${sync_env[@]}" "$JOBSCTL" sync --once >/dev/null; fi
DATABASE_URL="$SCHEMA_URL" "$BENCH" lambda --bin "$stripped/jobs-sync" --event lambda/tests/data/eventbridge-scheduled.json \
  --invocations 20 --data-api "${sync_env[@]/#/--env=}"
DATABASE_URL="$SCHEMA_URL" "$BENCH" lambda --bin "$stripped/jobs-api" --event "$event" --invocations 200 --data-api
if [[ -n ${SEARCH_URL:-} ]]; then drop_alias "bench-$schema"; fi
echo
echo "unstripped: jobs-api $(du -h "$REL/jobs-api" | cut -f1), jobs-sync $(du -h "$REL/jobs-sync" | cut -f1)"
rm -rf "$stripped" "$event"
