#!/usr/bin/env bash
# Runs the whole satlas test suite on a fresh machine: installs what is missing (scripts/setup.sh),
# then format check, clippy, the check that DuckDB is never compiled from source, and every test
# (unit, the one integration-test binary, doc).
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
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
cargo test --doc --locked
