#!/usr/bin/env bash
# Create-job throughput: the store (direct driver, and Data API driver + local server) vs pgbench,
# side by side on the same Postgres. Starts Postgres if DATABASE_URL is not set.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${DATABASE_URL:-}" ]; then
  "$ROOT/scripts/services.sh" start --engine none >/dev/null
  eval "$("$ROOT/scripts/services.sh" env --engine none)"
fi
echo "== store: create-job throughput vs pgbench (BENCH_SECONDS=${BENCH_SECONDS:-15} each, in BENCH_ROUNDS=${BENCH_ROUNDS:-3} rounds, order rotated)"
cd "$ROOT" && cargo bench -p jobs-tests --bench store_insert 2>/dev/null | grep '^|'
