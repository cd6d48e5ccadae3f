#!/usr/bin/env bash
# Installs what building Hashpool needs on a Debian machine, then builds every role.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v cc >/dev/null 2>&1 || need_pkgs+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_pkgs+=(pkg-config)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
# cdk's mint builds its signatory's gRPC code.
command -v protoc >/dev/null 2>&1 || need_pkgs+=(protobuf-compiler)
# promtool: the tests check every /metrics endpoint with it.
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
# The dashboards' browser test: Debian's Chromium driven through chromedriver.
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
# The deployment test checks every systemd unit with systemd-analyze.
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "==> installing system packages: ${need_pkgs[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed. Install Rust (https://rustup.rs, stable >= 1.88) and run this again." >&2
    exit 1
fi

if [ "${1:-}" = "--deps-only" ]; then
    exit 0
fi
echo "==> building every role (debug)"
cargo build --workspace --bins
