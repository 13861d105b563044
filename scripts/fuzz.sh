#!/usr/bin/env bash
# Runs the cargo-fuzz targets (nightly, libFuzzer) for SECONDS each (default 60), seeded from the
# conformance corpus. Not part of CI: `./dev fuzz 600` is the ten-minute run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${1:-60}"
TARGETS="${FUZZ_TARGETS:-validate query json}"
export CARGO_TARGET_DIR="${JOBS_CACHE:-$HOME/.cache/jobs}/fuzz-target"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cd "$ROOT/fuzz"
mkdir -p corpus/validate corpus/query corpus/json
python3 - <<'PY'
import json
for i, line in enumerate(open("../core/tests/data/corpus.ndjson")):
    case = json.loads(line)
    data = case["raw"].encode() if "raw" in case else json.dumps(case["input"]).encode()
    open(f"corpus/validate/seed{i:03}", "wb").write(data)
for i, q in enumerate(["status=RUNNING,FAILED&sort=-created_at&limit=10", "q=api&metadata.cpuCores.gte=4",
                       "created_after=2024-01-01T00:00:00Z&arch=amd64&hostname=ci.example.com"]):
    open(f"corpus/query/seed{i}", "w").write(q)
PY
for t in $TARGETS; do
  echo "== fuzz $t for ${SECONDS_EACH}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -E "^(stat::|#[0-9]+ +DONE|==|SUMMARY|.*panicked)" || true
done
