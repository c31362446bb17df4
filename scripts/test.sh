#!/usr/bin/env bash
# Runs the whole satlas test suite on a fresh machine: installs what is missing (scripts/setup.sh),
# then format check, the check that DuckDB is never compiled from source, and every test
# (unit, the one integration-test binary, doc) compiled under clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo fmt --all -- --check
if cargo tree --locked -e features -i libduckdb-sys | grep -q 'libduckdb-sys feature "bundled"'; then
  echo 'error: libduckdb-sys has the "bundled" feature (DuckDB compiled from source, ~15 min):' \
       'satlas links the prebuilt library scripts/setup.sh installs; remove the feature' >&2
  exit 1
fi
# Clippy lints satlas while the tests are compiled (clippy-driver as the workspace's rustc), so the
# dependencies are compiled once, not a second time in `cargo check` mode for `cargo clippy`. Same
# lints and exit status as `cargo clippy --all-targets -- -D warnings`.
export RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
cargo test --all-targets --locked
cargo test --doc --locked
