#!/usr/bin/env bash
# Installs the Debian packages Hashpool needs (with sudo unless root), then builds every role.
# Safe to run again: it installs only what is missing.
#
#   scripts/setup.sh                 build and test packages, then `cargo build --workspace --bins`
#   scripts/setup.sh --deps-only     build and test packages, no build (developers, .ci/run)
#   scripts/setup.sh --deps GROUPS   the packages of GROUPS only (comma-separated), no build:
#       build    compiling the workspace: C toolchain, pkg-config, protoc, curl
#       test     scripts/test.sh beyond the build: promtool (prometheus), chromium and
#                chromedriver, systemd-analyze (systemd), python3, caddy, postgresql
#       deploy   a server running the release binaries (docs/deployment.md): ca-certificates,
#                curl (health checks), sqlite3 (backups)
#       all      the three
#   --dry-run    print the packages of the groups and those missing here; install nothing,
#                build nothing
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
}
die() {
    echo "setup.sh: error: $*" >&2
    exit 1
}

# Each group: `command:package`, the package installed when the command is missing (`-`: no
# command to look for; the package itself is checked).
BUILD=(
    cc:build-essential
    pkg-config:pkg-config
    curl:curl
    # cdk's mint builds its signatory's gRPC code.
    protoc:protobuf-compiler
    # cdk-postgres (the mint on PostgreSQL) links OpenSSL through native-tls.
    -:libssl-dev
)
TEST=(
    # The tests check every /metrics endpoint with promtool.
    promtool:prometheus
    # The dashboards' browser tests: Debian's Chromium driven through chromedriver.
    chromium:chromium
    chromedriver:chromium-driver
    # The deployment test checks every systemd unit with systemd-analyze.
    systemd-analyze:systemd
    # The module-cycle check.
    python3:python3
    # The reverse-proxy example is checked with `caddy adapt`.
    caddy:caddy
    # The PostgreSQL tests (ledger, mint, stats) and `hashpool up --profile cluster`.
    -:postgresql
)
DEPLOY=(
    # HTTPS to a mint published under a public URL.
    -:ca-certificates
    # The health checks of docs/deployment.md.
    curl:curl
    # Online backups of the databases.
    sqlite3:sqlite3
)

groups=""
build=1
dry_run=0
while [ $# -gt 0 ]; do
    case $1 in
        --deps-only) groups=build,test; build=0; shift ;;
        --deps) [ $# -ge 2 ] || die "--deps needs groups (build, test, deploy, all)"; groups=$2; build=0; shift 2 ;;
        --deps=*) groups=${1#*=}; build=0; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[ -n "$groups" ] || groups=build,test

entries=()
IFS=, read -r -a wanted <<<"$groups"
[ ${#wanted[@]} -gt 0 ] || die "--deps needs groups (build, test, deploy, all)"
for g in "${wanted[@]}"; do
    case $g in
        build) entries+=("${BUILD[@]}") ;;
        test) entries+=("${TEST[@]}") ;;
        deploy) entries+=("${DEPLOY[@]}") ;;
        all) entries+=("${BUILD[@]}" "${TEST[@]}" "${DEPLOY[@]}") ;;
        *) die "unknown group '$g' (build, test, deploy, all)" ;;
    esac
done

installed() { # package
    dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}
pkgs=()
need_pkgs=()
for e in "${entries[@]}"; do
    cmd=${e%%:*}
    pkg=${e#*:}
    case " ${pkgs[*]} " in *" $pkg "*) continue ;; esac
    pkgs+=("$pkg")
    if [ "$cmd" = - ]; then
        installed "$pkg" || need_pkgs+=("$pkg")
    else
        command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("$pkg")
    fi
done

if [ "$dry_run" = 1 ]; then
    echo "groups: $groups"
    echo "packages: ${pkgs[*]}"
    echo "missing here: ${need_pkgs[*]}"
    exit 0
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "==> installing system packages: ${need_pkgs[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi

# Rust is not a Debian package here: building needs rustup's toolchain.
case ",$groups," in
    *,build,* | *,all,*)
        if ! command -v cargo >/dev/null 2>&1; then
            echo "error: cargo is not installed. Install Rust (https://rustup.rs, stable >= 1.88) and run this again." >&2
            exit 1
        fi
        ;;
esac
if [ "$build" = 0 ]; then
    exit 0
fi
echo "==> building every role (debug)"
cargo build --workspace --bins
