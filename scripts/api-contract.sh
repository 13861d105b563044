#!/usr/bin/env bash
# The API against its OpenAPI document: `jobsctl serve` on a fresh schema of $DATABASE_URL (and
# $SEARCH_URL when set), a token for a user with a workspace, then schemathesis with every check
# but positive_data_acceptance (the schema cannot express all of the core's rules, e.g. hostname
# syntax or status transitions, so schema-valid input may rightly be refused), and the statuses
# that count as refusing bad input from scripts/schemathesis.toml. Fails on any 5xx or any
# response that breaks the document. Called by scripts/test.sh.
#
#   scripts/api-contract.sh JOBSCTL SCHEMATHESIS
#   SCHEMATHESIS_MAX_EXAMPLES (default 100), SCHEMATHESIS_SEED (default: random, printed)
set -euo pipefail
JOBSCTL="$1"
ST="$2"
CONFIG="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/schemathesis.toml"
: "${DATABASE_URL:?DATABASE_URL is required}"
uuid() { cat /proc/sys/kernel/random/uuid; }

schema="contract_$(date +%s)_$$"
"$JOBSCTL" migrate --schema "$schema" >/dev/null
sep='?'
if [[ $DATABASE_URL == *\?* ]]; then sep='&'; fi
JOBS_JWT_SECRET="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export JOBS_JWT_SECRET
log="$(mktemp)"
work="$(mktemp -d)" # schemathesis keeps its example database in the current directory
# Its own index too (the alias names it), dropped at the end.
alias="${schema//_/-}"
drop_index() {
  [[ -n ${SEARCH_URL:-} ]] || return 0
  local idx
  for idx in $(curl -fsS "$SEARCH_URL/_alias/$alias*" 2>/dev/null | grep -o '"[^"]*":{"aliases"' | cut -d'"' -f2); do
    curl -fsS -X DELETE "$SEARCH_URL/$idx" >/dev/null 2>&1 || true
  done
  curl -fsS -X DELETE "$SEARCH_URL/_index_template/$alias" >/dev/null 2>&1 || true
}
DATABASE_URL="$DATABASE_URL${sep}options=-csearch_path%3D$schema" RUST_LOG="${RUST_LOG:-warn}" \
  SEARCH_ALIAS="$alias" SEARCH_REPLICAS=0 \
  "$JOBSCTL" serve --addr 127.0.0.1:0 --web-dir /nonexistent --pkg-dir /nonexistent >"$log" 2>&1 &
pid=$!
drop_schema() { psql "$DATABASE_URL" -XqAtc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; }
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$log" "$work"; drop_index; drop_schema' EXIT
base=""
for _ in $(seq 1 100); do
  base="$(sed -n 's/^jobsctl serve: listening on \(http:[^ ]*\)$/\1/p' "$log")"
  [[ -n $base ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $base ]] || { echo "api-contract: jobsctl serve did not start" >&2; cat "$log" >&2; exit 1; }
echo "api-contract: $base (schema $schema, search ${SEARCH_URL:-none})"
token="$("$JOBSCTL" token --user "$(uuid)" --email contract@example.com --workspace "$(uuid)")"
seed="${SCHEMATHESIS_SEED:-$RANDOM$RANDOM}"
echo "api-contract: seed $seed"
status=0
cd "$work"
"$ST" --config-file "$CONFIG" run "$base/v1/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" --seed "$seed" \
  --request-timeout 10 --no-color || status=$?
if grep -q 'panicked' "$log"; then
  echo "api-contract: the server panicked:" >&2
  grep -A5 panicked "$log" >&2
  status=1
fi
exit "$status"
