#!/usr/bin/env bash
# The benchmarks (not run in CI). Each section prints a Markdown table to paste into
# BENCHMARKS.md together with the machine and the command. `./dev bench [SECTION...]`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export JOBS_CACHE="${JOBS_CACHE:-$HOME/.cache/jobs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$JOBS_CACHE/target}"
SECTIONS="${*:-core wasm api}"

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -m), $(date -u +%F)"
for s in $SECTIONS; do
  case "$s" in
    core)
      echo "== core: criterion, ours beside bare serde_json on the same bytes"
      marker="$(mktemp)"
      cargo bench -p jobs-core --bench core -- --warm-up-time 2 --measurement-time 5 >/dev/null
      python3 "$ROOT/scripts/criterion-summary.py" --newer "$marker"
      rm -f "$marker"
      ;;
    *)
      if [ -x "$ROOT/scripts/bench-$s.sh" ]; then "$ROOT/scripts/bench-$s.sh"; else echo "unknown section $s" >&2; exit 2; fi
      ;;
  esac
done
