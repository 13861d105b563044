# Sourced by ./dev and scripts/wasm.sh (ROOT and CARGO_TARGET_DIR set).
#
# Cargo keys a workspace crate's build by its path inside the workspace, not by the checkout:
# with CARGO_TARGET_DIR shared, another checkout's build of jobs-core looks fresh here when its
# sources were written after ours, and its code is what gets tested, linted and packaged. When
# the last build came from another checkout, our crates' fingerprints go, in every profile and
# target (their dependencies stay built; not `cargo clean -p jobs-core`, which with the nightly's
# std built for the package also removes std's `core`). A fresh clone's sources are newer than
# any build, so CI rebuilds them anyway.
forget_other_checkouts() {
  local mark="$CARGO_TARGET_DIR/.jobs-checkout"
  if [[ -d $CARGO_TARGET_DIR && "$(cat "$mark" 2>/dev/null)" != "$ROOT" ]]; then
    rm -rf "$CARGO_TARGET_DIR"/*/.fingerprint/jobs-* "$CARGO_TARGET_DIR"/*/*/.fingerprint/jobs-*
  fi
  mkdir -p "$CARGO_TARGET_DIR" && printf '%s\n' "$ROOT" >"$mark"
}
