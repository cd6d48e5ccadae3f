#!/usr/bin/env bash
# Installs what the build needs and builds (scripts/setup.sh), then starts a local run with the
# configs in config/: template provider (regtest), pool, mint, one SV2 CPU miner whose wallet
# mints the ehash it earns, the stats services and dashboards, and the translator (with its wallet) with one SV1 CPU miner behind it. Logs go to .hashpool/logs/; chain, ledger, mint and wallet databases
# are kept in .hashpool/data/.
# Ctrl-C stops every role.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BIN="${CARGO_TARGET_DIR:-target}/debug"
LOGS=.hashpool/logs
mkdir -p "$LOGS" .hashpool/data

for port in 18447 18443 34254 34260 9108 3338 34255 9109 8083; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "error: port $port is already in use (another local run?). Stop it and try again." >&2
        exit 1
    fi
done

pids=()
stopping=0
cleanup() {
    [ "$stopping" = 1 ] && return
    stopping=1
    echo
    echo "==> stopping"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_http() { # url what
    for _ in $(seq 1 100); do
        curl -fsS "$1" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "error: $2 did not come up; see $LOGS/" >&2
    exit 1
}

"$BIN/template-provider" -c config/template-provider.config.toml -f "$LOGS/template-provider.log" >/dev/null &
pids+=($!)
wait_http http://127.0.0.1:18443/status "template provider"

# The stats services first: the pool and the translator report to them from their start.
"$BIN/stats-pool" -c config/stats-pool.config.toml -g config/shared/pool.toml \
    -f "$LOGS/stats-pool.log" >/dev/null &
pids+=($!)
wait_http http://127.0.0.1:8091/api/v1/health "stats-pool"
"$BIN/stats-proxy" -c config/stats-proxy.config.toml -g config/shared/proxy.toml \
    -f "$LOGS/stats-proxy.log" >/dev/null &
pids+=($!)
wait_http http://127.0.0.1:8092/api/v1/health "stats-proxy"

"$BIN/pool" -c config/pool.config.toml -g config/shared/pool.toml -f "$LOGS/pool.log" >/dev/null &
pids+=($!)
wait_http http://127.0.0.1:9108/api/v1/health "pool"

"$BIN/mint" -c config/mint.config.toml -g config/shared/pool.toml -f "$LOGS/mint.log" >/dev/null &
pids+=($!)
wait_http http://127.0.0.1:3338/v1/info "mint"

"$BIN/mining-device" --pool 127.0.0.1:34254 \
    --pool-pubkey 9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72 \
    --user-identity local-miner --nominal-hashrate 50000 --limit-hashrate \
    --wallet-mint-url http://127.0.0.1:3338 \
    --wallet-db .hashpool/data/mining-device/wallet.sqlite \
    --wallet-mnemonic-file .hashpool/data/mining-device/mnemonic \
    -f "$LOGS/mining-device.log" >/dev/null &
pids+=($!)

"$BIN/translator" -c config/translator.config.toml -g config/shared/proxy.toml \
    -f "$LOGS/translator.log" >/dev/null &
pids+=($!)
for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/34255) 2>/dev/null && break
    sleep 0.2
done

"$BIN/web-pool" -c config/web-pool.config.toml -g config/shared/pool.toml \
    -f "$LOGS/web-pool.log" >/dev/null &
pids+=($!)
"$BIN/web-proxy" -c config/web-proxy.config.toml -g config/shared/proxy.toml \
    -f "$LOGS/web-proxy.log" >/dev/null &
pids+=($!)
wait_http http://127.0.0.1:8081/ "web-pool"
wait_http http://127.0.0.1:3030/ "web-proxy"

"$BIN/mining-device-sv1" --address 127.0.0.1:34255 --user local.sv1 --limit-hashrate 50000 \
    -f "$LOGS/mining-device-sv1.log" >/dev/null &
pids+=($!)

cat <<MSG
==> local run is up
    pool dashboard    http://127.0.0.1:8081/   (web-pool, docs/web.md)
    miner's page      http://127.0.0.1:3030/   (web-proxy: balance, miners, tokens)
    chain status      http://127.0.0.1:18443/status
    pool monitoring   http://127.0.0.1:9108/api/v1/clients   (Prometheus: /metrics)
    mint (Cashu API)  http://127.0.0.1:3338/v1/info   (Prometheus: /metrics)
    miner's wallet    .hashpool/data/mining-device/ (mnemonic, wallet.sqlite); balance in
                      $LOGS/mining-device.log and via cdk-cli (docs/mining-device.md)
    translator (SV1)  127.0.0.1:34255, wallet in .hashpool/data/translator/
    translator wallet http://127.0.0.1:8083/api/v1/balance   (docs/translator.md)
    translator status http://127.0.0.1:9109/api/v1/status    (Prometheus: /metrics)
    stats-pool        http://127.0.0.1:8091/api/v1/subjects   (docs/stats.md; Prometheus: /metrics)
    stats-proxy       http://127.0.0.1:8092/api/v1/subjects   (docs/stats.md; Prometheus: /metrics)
    logs              $LOGS/
Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
[ "$stopping" = 1 ] || echo "a role exited; see $LOGS/" >&2
