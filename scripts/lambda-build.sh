#!/usr/bin/env bash
# `./dev lambda-build`: the two Lambda functions (jobs-api, jobs-sync) for arm64, as template.yaml
# deploys them (provided.al2023, arm64): a release build for aarch64-unknown-linux-gnu linked by
# Debian's cross gcc, stripped, and packaged the way `cargo lambda build --output-format zip`
# does, as target/lambda/<name>/bootstrap.zip (one file, `bootstrap`, executable) next to
# template.yaml, whose CodeUri points there. No cargo-lambda, zig or Docker needed.
#
# provided.al2023 has glibc 2.34 and Debian 12's cross glibc is 2.36: the build fails if a binary
# asks for a GLIBC_ symbol version above 2.34 (checked with aarch64-linux-gnu-objdump -T).
#
# Installs what is missing: the rustup target, and with apt-get gcc-aarch64-linux-gnu (with the
# arm64 glibc it links against), binutils-aarch64-linux-gnu (strip, objdump) and zip. The C
# parts (aws-lc-sys, ring) build with that gcc through the cc crate: no cmake or clang.
#
# Output: target/lambda/<name>/bootstrap.zip (deploy), and the stripped binaries the zips hold
# under $CARGO_TARGET_DIR/lambda-arm64/<name>/bootstrap (what the tests run under qemu-aarch64).
#
# Environment: JOBS_CACHE (default ~/.cache/jobs), CARGO_TARGET_DIR (default $JOBS_CACHE/target).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export JOBS_CACHE="${JOBS_CACHE:-$HOME/.cache/jobs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$JOBS_CACHE/target}"
TARGET=aarch64-unknown-linux-gnu
BINS=(jobs-api jobs-sync)
GLIBC_MAX=2.34 # provided.al2023
OUT="$ROOT/target/lambda"
STAGE="$CARGO_TARGET_DIR/lambda-arm64"

log() { printf 'lambda-build: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
command -v aarch64-linux-gnu-objdump >/dev/null || missing+=(binutils-aarch64-linux-gnu)
command -v zip >/dev/null || missing+=(zip)
command -v unzip >/dev/null || missing+=(unzip)
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || die "missing ${missing[*]}: sudo apt-get install -y ${missing[*]}"
  log "installing ${missing[*]} with apt-get"
  apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q -y)
  "${apt[@]}" install "${missing[@]}" >/dev/null || { "${apt[@]}" update >/dev/null && "${apt[@]}" install "${missing[@]}" >/dev/null; }
fi
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
bin_args=()
for b in "${BINS[@]}"; do bin_args+=(--bin "$b"); done
log "cargo build --release --target $TARGET ${bin_args[*]}"
cargo build --release --locked --target "$TARGET" -p jobs-lambda "${bin_args[@]}"

# The highest X in any GLIBC_X a binary's dynamic symbols need.
glibc_needed() {
  aarch64-linux-gnu-objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1
}

for b in "${BINS[@]}"; do
  built="$CARGO_TARGET_DIR/$TARGET/release/$b"
  mkdir -p "$STAGE/$b" "$OUT/$b"
  # Strip into the stage; a fixed mtime keeps the zip byte-identical while the binary is.
  aarch64-linux-gnu-strip -o "$STAGE/$b/bootstrap.tmp" "$built"
  if cmp -s "$STAGE/$b/bootstrap.tmp" "$STAGE/$b/bootstrap"; then rm "$STAGE/$b/bootstrap.tmp"; else mv "$STAGE/$b/bootstrap.tmp" "$STAGE/$b/bootstrap"; fi
  chmod 755 "$STAGE/$b/bootstrap"
  touch -d '2020-01-01T00:00:00Z' "$STAGE/$b/bootstrap"
  need="$(glibc_needed "$STAGE/$b/bootstrap")"
  if [[ "$(printf '%s\n%s\n' "$need" "$GLIBC_MAX" | sort -V | tail -n1)" != "$GLIBC_MAX" ]]; then
    aarch64-linux-gnu-objdump -T "$STAGE/$b/bootstrap" | grep -E "GLIBC_$need" >&2 || true
    die "$b needs GLIBC_$need, provided.al2023 has $GLIBC_MAX"
  fi
  aarch64-linux-gnu-objdump -f "$STAGE/$b/bootstrap" | grep -q 'architecture: aarch64' || die "$b is not an aarch64 binary"
  rm -f "$OUT/$b/bootstrap.zip"
  (cd "$STAGE/$b" && TZ=UTC zip -q -X "$OUT/$b/bootstrap.zip" bootstrap)
  unzip -p "$OUT/$b/bootstrap.zip" bootstrap | cmp -s - "$STAGE/$b/bootstrap" || die "$OUT/$b/bootstrap.zip does not hold the binary"
  printf '%-9s %s  %s bytes stripped, %s bytes zipped, needs GLIBC_%s\n' "$b" \
    "${OUT#"$ROOT/"}/$b/bootstrap.zip" "$(stat -c %s "$STAGE/$b/bootstrap")" "$(stat -c %s "$OUT/$b/bootstrap.zip")" "$need"
done
