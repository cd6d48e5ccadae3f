#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> module dependency cycles"
python3 scripts/check-module-cycles.py
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# The supervisor's end-to-end test runs the role binaries themselves.
echo "==> cargo build --workspace --bins"
cargo build --workspace --bins
echo "==> cargo test"
cargo test --workspace
