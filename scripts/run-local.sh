#!/usr/bin/env bash
# Installs what the build needs and builds (scripts/setup.sh), then starts every role of a local
# run with `hashpool up` (config/profiles/dev.toml; arguments are passed on, e.g.
# `--foreground`). Logs: .hashpool/logs/; databases: .hashpool/data/. `hashpool stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${CARGO_TARGET_DIR:-target}/debug/hashpool" up "$@"
