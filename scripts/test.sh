#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> module dependency cycles"
python3 scripts/check-module-cycles.py
echo "==> scripts/setup.sh --deps (dry run)"
setup_packages() { scripts/setup.sh "$@" --dry-run | sed -n 's/^packages: //p'; }
check_packages() { # expected, setup.sh arguments...
    local want=$1 got
    shift
    got=$(setup_packages "$@")
    [ "$got" = "$want" ] || { echo "scripts/setup.sh $*: packages '$got', expected '$want'" >&2; exit 1; }
}
check_packages "ca-certificates curl sqlite3" --deps deploy
check_packages "build-essential pkg-config curl protobuf-compiler libssl-dev prometheus chromium chromium-driver systemd python3 caddy postgresql" --deps-only
check_packages "build-essential pkg-config curl protobuf-compiler libssl-dev ca-certificates sqlite3" --deps build,deploy
if scripts/setup.sh --deps tests --dry-run >/dev/null 2>&1; then
    echo "scripts/setup.sh accepted an unknown group" >&2
    exit 1
fi
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# The supervisor's end-to-end test runs the role binaries themselves.
echo "==> cargo build --workspace --bins"
cargo build --workspace --bins
echo "==> cargo test"
cargo test --workspace
