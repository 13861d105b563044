#!/usr/bin/env bash
# ./dev bench sync: the sync's throughput against the raw _bulk ceiling and against PGSync, and
# its change-to-searchable lag, in one run on the same Postgres and the same OpenSearch
# (tests/benches/sync.rs). Not run in CI. Prints Markdown tables for BENCHMARKS.md "## Sync".
#
# Services: uses DATABASE_URL and OPENSEARCH_URL when set; otherwise starts its own Postgres and
# OpenSearch (JOBS_STATE, default $JOBS_CACHE/state-bench) and stops them at the end.
# PGSync 7.x is installed from PyPI into $JOBS_CACHE/venv-pgsync (never committed); its Redis is
# Debian's redis-server, installed with apt if missing and run on 127.0.0.1 for this run only.
#
# Environment: BENCH_JOBS (100000), BENCH_ROUNDS (2), BENCH_LAG_RATE (500), BENCH_LAG_SECONDS
# (30), BENCH_SECTIONS (throughput,pgsync,lag), BENCH_NO_PGSYNC=1 to skip PGSync, BENCH_SHARDS (1)
# primary shards of every index it makes.
# BENCH_PIN=1 gives the engine CPU 0 and everything else of the run (Postgres and its backends,
# the benchmark, PGSync, Redis) CPU 1, as if the engine were a machine of its own (OpenSearch
# Service beside Aurora and Lambda); other processes on the box are not moved. Needs services
# started by this script or named by JOBS_STATE; the affinity is restored at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export JOBS_CACHE="${JOBS_CACHE:-$HOME/.cache/jobs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$JOBS_CACHE/target}"

log() { printf 'bench-sync: %s\n' "$*" >&2; }

pids=()
started_services=0
pinned=()
cleanup() {
  for p in "${pinned[@]}"; do taskset -a -cp "0-$(($(nproc) - 1))" "$p" >/dev/null 2>&1 || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "$started_services" = 1 ]; then "$ROOT/scripts/services.sh" stop || true; fi
}
trap cleanup EXIT

# --- services ---------------------------------------------------------------------------------
if [ -z "${DATABASE_URL:-}" ] || [ -z "${OPENSEARCH_URL:-}" ]; then
  export JOBS_STATE="${JOBS_STATE:-$JOBS_CACHE/state-bench}"
  log "starting Postgres and OpenSearch (JOBS_STATE=$JOBS_STATE)"
  "$ROOT/scripts/services.sh" start --engine opensearch >&2
  started_services=1
  eval "$("$ROOT/scripts/services.sh" env --engine opensearch)"
fi
log "DATABASE_URL=$DATABASE_URL OPENSEARCH_URL=$OPENSEARCH_URL"
# The engine's and the postmaster's pids, when the services are ours, for the CPU columns.
STATE="${JOBS_STATE:-$JOBS_CACHE/state}"
os_port="${OPENSEARCH_URL##*:}"; os_port="${os_port%%/*}"
pg_port="${DATABASE_URL##*:}"; pg_port="${pg_port%%/*}"
if [ -f "$STATE/opensearch/pid" ] && [ "$(cat "$STATE/opensearch/port" 2>/dev/null)" = "$os_port" ]; then
  BENCH_ENGINE_PID="$(cat "$STATE/opensearch/pid")"; export BENCH_ENGINE_PID
fi
if [ -f "$STATE/postgres/data/postmaster.pid" ] && [ "$(cat "$STATE/postgres/port" 2>/dev/null)" = "$pg_port" ]; then
  BENCH_PG_PID="$(head -1 "$STATE/postgres/data/postmaster.pid")"; export BENCH_PG_PID
fi

# --- PGSync and Redis -------------------------------------------------------------------------
if [ -z "${BENCH_NO_PGSYNC:-}" ]; then
  VENV="$JOBS_CACHE/venv-pgsync"
  if [ ! -x "$VENV/bin/pgsync" ]; then
    log "installing PGSync 7.x into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'pgsync>=7,<8' >&2
  fi
  export PGSYNC_BIN="$VENV/bin"
  if ! command -v redis-server >/dev/null; then
    [ "$(id -u)" = 0 ] || { log "redis-server is missing: sudo apt-get install -y redis-server"; exit 1; }
    log "installing redis-server with apt"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q -y install redis-server >&2
  fi
  # A port below the ephemeral range and below the services' range, free now.
  for _ in $(seq 1 50); do
    REDIS_PORT=$((12000 + RANDOM % 8000))
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null || break
  done
  export REDIS_PORT
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --protected-mode yes \
    --daemonize no --logfile '' >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$REDIS_PORT" ping >/dev/null || { log "redis did not start"; exit 1; }
  log "PGSync $("$VENV/bin/pgsync" --version 2>/dev/null | sed 's/Version: //'), redis on 127.0.0.1:$REDIS_PORT"
fi

# --- the benchmark ----------------------------------------------------------------------------
echo "machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/Mem:/{print $2}') GiB, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "postgres: $(psql "$DATABASE_URL" -XAtc 'SHOW server_version' 2>/dev/null || echo '?'), wal_level=$(psql "$DATABASE_URL" -XAtc 'SHOW wal_level' 2>/dev/null || echo '?')"
echo "command: ./dev bench sync (BENCH_JOBS=${BENCH_JOBS:-100000} BENCH_ROUNDS=${BENCH_ROUNDS:-2} BENCH_LAG_RATE=${BENCH_LAG_RATE:-500} BENCH_LAG_SECONDS=${BENCH_LAG_SECONDS:-30})"
cargo bench -p jobs-tests --bench sync --locked --no-run >&2
if [ -n "${BENCH_PIN:-}" ]; then
  [ -n "${BENCH_ENGINE_PID:-}" ] && [ -n "${BENCH_PG_PID:-}" ] || { log "BENCH_PIN needs the services' pids (start them with this script or set JOBS_STATE)"; exit 1; }
  [ "$(nproc)" -ge 2 ] || { log "BENCH_PIN needs two CPUs"; exit 1; }
  taskset -a -cp 0 "$BENCH_ENGINE_PID" >/dev/null
  pinned+=("$BENCH_ENGINE_PID")
  for p in "$BENCH_PG_PID" $(pgrep -P "$BENCH_PG_PID") "${pids[@]}"; do
    taskset -a -cp 1 "$p" >/dev/null && pinned+=("$p")
  done
  echo "pinned: the engine on CPU 0; Postgres, the benchmark, PGSync and Redis on CPU 1"
  taskset -c 1 cargo bench -p jobs-tests --bench sync --locked
else
  cargo bench -p jobs-tests --bench sync --locked
fi
