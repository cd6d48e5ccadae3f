#!/usr/bin/env bash
# The real cdk-cli 0.18.3 against our mint: mints an ehash quote by id, shows the balance,
# sends and receives tokens with a hashpool wallet (tests/e2e/src/bin/cdk_cli_check.rs).
# Not in CI: building cdk-cli takes about a quarter of an hour here. The binary is kept in
# .hashpool/tools (override with CDK_CLI=/path/to/cdk-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
CDK_CLI="${CDK_CLI:-.hashpool/tools/bin/cdk-cli}"
if [ ! -x "$CDK_CLI" ]; then
  echo "==> building cdk-cli 0.18.3 into .hashpool/tools"
  cargo install cdk-cli --version =0.18.3 --locked --root .hashpool/tools
  CDK_CLI=.hashpool/tools/bin/cdk-cli
fi
"$CDK_CLI" --version
cargo run -p hashpool-e2e --bin cdk-cli-check -- --cdk-cli "$CDK_CLI"
