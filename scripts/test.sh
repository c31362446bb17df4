#!/usr/bin/env bash
# Runs the whole satlas test suite on a fresh machine: installs what is missing (scripts/setup.sh),
# then format check, clippy, and every test (unit, integration, doc).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
cargo test --doc --locked
