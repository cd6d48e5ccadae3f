#!/usr/bin/env bash
# share-load, side by side: our pool (ehash on, the real mint, one wallet per channel minting
# its quotes) and SRI's pool_sv2 0.7.0, both on our template provider with mainnet's
# difficulty-1 nBits (no share is a block, so no new tip interrupts the run), driven by the same
# `share-load` with the same parameters, one after the other in one run; prints both reports and
# the ratio. A benchmark, not part of CI (docs/benchmarks.md, "share-load: our pool vs
# pool_sv2").
#
# Both pools get the same easy shares: our pool's `limits.min_share_difficulty` is lowered to
# 1e-30 and both pools' `shares_per_minute` is 1e9, so every channel's target is the maximal one
# (every nonce is a share) and vardiff never raises it; pool_sv2 0.7.0 has no difficulty floor
# of its own (its target comes from the channel's nominal hashrate and `shares_per_minute`).
#
# Parameters (environment):
#   CHANNELS (4), IN_FLIGHT (64), DURATION secs (20), ROUNDS (1: each round runs both pools),
#   SHARE_BATCH (1: shares per SubmitShares.Success, both pools; pool_sv2 acknowledges a batch
#   only when it is full, so keep IN_FLIGHT >= SHARE_BATCH), QUOTE_BATCH_MS (100),
#   BENCH_PORT_BASE (29000: ports BASE..BASE+50 on 127.0.0.1, below the ephemeral range so
#   no outgoing connection holds one),
#   HASHPOOL_BENCH_CACHE (~/.cache/hashpool-bench: where pool_sv2 is installed),
#   PROFILE (release; `debug` runs target/debug binaries), SKIP_BUILD=1 (use built binaries),
#   CARGO_TARGET_DIR (target), KEEP=1 (keep the work directory with configs and logs).
set -euo pipefail
cd "$(dirname "$0")/.."

CHANNELS=${CHANNELS:-4}
IN_FLIGHT=${IN_FLIGHT:-64}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-1}
SHARE_BATCH=${SHARE_BATCH:-1}
QUOTE_BATCH_MS=${QUOTE_BATCH_MS:-100}
BASE=${BENCH_PORT_BASE:-29000}
CACHE=${HASHPOOL_BENCH_CACHE:-$HOME/.cache/hashpool-bench}
PROFILE=${PROFILE:-release}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$TARGET_DIR/$PROFILE"
POOL_SV2="$CACHE/bin/pool_sv2"

# The well-known SRI test authority keypair: local benchmarks only.
PUBLIC_KEY=9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72
SECRET_KEY=mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n
# One ehash per share: a maximal-target share proves one hash of work (1.2 / difficulty-1 work,
# as share-bench; the ledger rounds work to whole hashes).
UNIT_WORK=$(python3 -c 'print(repr(1.2 / 0x100010001))')

TP_PORT=$BASE TP_HTTP=$((BASE + 1))
POOL_PORT=$((BASE + 10)) MINT_LINK=$((BASE + 11)) POOL_MONITORING=$((BASE + 12))
MINT_HTTP=$((BASE + 20)) MINT_MONITORING=$((BASE + 21))
STATS_INGEST=$((BASE + 30)) STATS_HTTP=$((BASE + 31)) WEB=$((BASE + 40))
SRI_PORT=$((BASE + 50))

log() { echo "==> $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- binaries ---------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build ($PROFILE): pool, mint, template-provider, hashpool-wallet, share-load"
    flags=()
    [ "$PROFILE" = release ] && flags=(--release)
    cargo build "${flags[@]}" -p pool -p mint -p template-provider -p hashpool-wallet-cli -p share-load
fi
for b in pool mint template-provider hashpool-wallet share-load; do
    [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (build it, or unset SKIP_BUILD)" >&2; exit 1; }
done
if [ ! -x "$POOL_SV2" ]; then
    if ! command -v capnp >/dev/null; then
        log "pool_sv2 needs the capnp compiler: apt-get install capnproto libcapnp-dev"
        as_root apt-get install -y capnproto libcapnp-dev
    fi
    log "cargo install pool_sv2 0.7.0 into $CACHE"
    cargo install pool_sv2 --version 0.7.0 --locked --root "$CACHE"
fi

# --- processes --------------------------------------------------------------------------------
WORK=$(mktemp -d -t hashpool-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

LAST_PID=
start() { # name, command...: runs in the background (pid in LAST_PID), output in $WORK/<name>.log
    local name=$1
    shift
    RUST_LOG=${RUST_LOG:-warn} "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
stop() { # pid: SIGTERM, then wait for the exit
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
wait_port() { # port, what
    for _ in $(seq 1 300); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$2 is not listening on $1 (logs: $WORK, KEEP=1 keeps them)" >&2
    KEEP=1
    exit 1
}

# --- configuration ----------------------------------------------------------------------------
mkdir -p "$WORK/tp"
cat >"$WORK/tp.toml" <<EOF
[template_provider]
listen_address = "127.0.0.1:$TP_PORT"
http_address = "127.0.0.1:$TP_HTTP"
authority_public_key = "$PUBLIC_KEY"
authority_secret_key = "$SECRET_KEY"
cert_validity_secs = 3600

[chain]
data_dir = "$WORK/tp"
# Mainnet's difficulty-1 target: no share is ever a block.
nbits = "1d00ffff"

[mempool]
synthetic_tx_interval_ms = 5000
synthetic_tx_fee_sats = 1000
max_transactions = 100
EOF
cat >"$WORK/shared.toml" <<EOF
[pool]
listen_address = "127.0.0.1:$POOL_PORT"
mint_link_address = "127.0.0.1:$MINT_LINK"
monitoring_address = "127.0.0.1:$POOL_MONITORING"
authority_public_key = "$PUBLIC_KEY"

[mint]
http_address = "127.0.0.1:$MINT_HTTP"
authority_public_key = "$PUBLIC_KEY"

[stats]
ingest_address = "127.0.0.1:$STATS_INGEST"
http_address = "127.0.0.1:$STATS_HTTP"
authority_public_key = "$PUBLIC_KEY"
reporter_public_keys = ["$PUBLIC_KEY"]

[web]
address = "127.0.0.1:$WEB"

[ehash]
unit = "hash"
unit_work = $UNIT_WORK
EOF
cat >"$WORK/pool.toml" <<EOF
[pool]
authority_secret_key = "$SECRET_KEY"
cert_validity_secs = 3600
coinbase_reward_script = "raw(00147a5ee1a1a4a5b35c3e0e2d4bd6c1a7bb17b3d7c1)"
pool_signature = "hashpool"
server_id = 1
# Vardiff never moves the maximal target, and the duplicate-share budget fits the run.
shares_per_minute = 1000000000.0
share_batch_size = $SHARE_BATCH
share_ack_interval_ms = 1000
vardiff_interval_secs = 3600
max_channels_per_connection = 256
mint_quote_extension = true
ledger_path = "$WORK/ROUND/ledger.sqlite"

[template_provider]
address = "127.0.0.1:$TP_PORT"
authority_public_key = "$PUBLIC_KEY"
reconnect_initial_ms = 500
reconnect_max_ms = 10000

[quotes]
batch_interval_ms = $QUOTE_BATCH_MS
retry_interval_ms = 5000

# Every limit at its default but the difficulty floor: every nonce a share, as for pool_sv2.
[limits]
min_share_difficulty = 1e-30
EOF
cat >"$WORK/mint.toml" <<EOF
[mint]
authority_secret_key = "$SECRET_KEY"
database_path = "$WORK/ROUND/mint.sqlite"
seed_path = "$WORK/ROUND/mint-seed"
name = "Hashpool mint (bench)"
description = "share-load benchmark"
max_concurrent_quotes = 4
other_urls = []
monitoring_address = "127.0.0.1:$MINT_MONITORING"
lookup_nonce_capacity = 100000

[pool_link]
reconnect_initial_ms = 500
reconnect_max_ms = 10000
EOF
cat >"$WORK/pool_sv2.toml" <<EOF
authority_public_key = "$PUBLIC_KEY"
authority_secret_key = "$SECRET_KEY"
cert_validity_sec = 3600
listen_address = "127.0.0.1:$SRI_PORT"
coinbase_reward_script = "raw(00147a5ee1a1a4a5b35c3e0e2d4bd6c1a7bb17b3d7c1)"
server_id = 2
pool_signature = "Stratum V2 SRI Pool"
shares_per_minute = 1000000000.0
share_batch_size = $SHARE_BATCH

[template_provider_type.Sv2Tp]
address = "127.0.0.1:$TP_PORT"
public_key = "$PUBLIC_KEY"
EOF

# --- runs -------------------------------------------------------------------------------------
log "template provider (nbits 1d00ffff) on $TP_PORT"
start tp "$BIN/template-provider" -c "$WORK/tp.toml"
wait_port "$TP_PORT" "the template provider"

load() { # port, result file, users...
    local port=$1 out=$2
    shift 2
    local users=()
    for u in "$@"; do users+=(--user "$u"); done
    "$BIN/share-load" --pool "127.0.0.1:$port" --authority-key "$PUBLIC_KEY" \
        --channels "$CHANNELS" --in-flight "$IN_FLIGHT" --duration "$DURATION" \
        "${users[@]}" --json >"$out"
}

run_ours() { # round
    local round=$1 dir="$WORK/ours-$1"
    mkdir -p "$dir"
    log "round $round: our pool (ehash on, real mint, $CHANNELS wallets minting)"
    local pool_pid mint_pid keys=() wallet_pids=()
    # A fresh ledger and mint database every round: each round measures the same start.
    sed "s|$WORK/ROUND/|$dir/|" "$WORK/pool.toml" >"$dir/pool.toml"
    sed "s|$WORK/ROUND/|$dir/|" "$WORK/mint.toml" >"$dir/mint.toml"
    start "pool-$round" "$BIN/pool" -c "$dir/pool.toml" -g "$WORK/shared.toml"
    pool_pid=$LAST_PID
    start "mint-$round" "$BIN/mint" -c "$dir/mint.toml" -g "$WORK/shared.toml"
    mint_pid=$LAST_PID
    wait_port "$POOL_PORT" "our pool"
    wait_port "$MINT_HTTP" "the mint"
    for i in $(seq 1 "$CHANNELS"); do
        local w="$dir/wallet-$i"
        keys+=("$("$BIN/hashpool-wallet" --dir "$w" --mint "http://127.0.0.1:$MINT_HTTP" init --json |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["public_key"])')")
        start "wallet-$round-$i" "$BIN/hashpool-wallet" --dir "$w" serve \
            --listen 127.0.0.1:0 --claim-every 1
        wallet_pids+=("$LAST_PID")
    done
    load "$POOL_PORT" "$WORK/ours-$round.json" "${keys[@]}"
    # Let the wallets claim the last quotes (one batch interval, a claim every second).
    local minted=0 want
    want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accepted"])' \
        "$WORK/ours-$round.json")
    for _ in $(seq 1 30); do
        minted=0
        for i in $(seq 1 "$CHANNELS"); do
            local b
            b=$("$BIN/hashpool-wallet" --dir "$dir/wallet-$i" balance --json |
                python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"])')
            minted=$((minted + b))
        done
        [ "$minted" -ge "$want" ] && break
        sleep 1
    done
    echo "$minted" >"$WORK/ours-$round.minted"
    for pid in "${wallet_pids[@]}"; do stop "$pid"; done
    stop "$pool_pid"
    stop "$mint_pid"
}

run_sri() { # round
    local round=$1
    log "round $round: pool_sv2 0.7.0"
    local pid
    start "pool_sv2-$round" "$POOL_SV2" -c "$WORK/pool_sv2.toml"
    pid=$LAST_PID
    wait_port "$SRI_PORT" "pool_sv2"
    load "$SRI_PORT" "$WORK/sri-$round.json" share-load
    stop "$pid"
}

for round in $(seq 1 "$ROUNDS"); do
    run_ours "$round"
    run_sri "$round"
done

# --- results ----------------------------------------------------------------------------------
python3 - "$WORK" "$ROUNDS" <<'EOF'
import json, sys
work, rounds = sys.argv[1], int(sys.argv[2])

def show(name, r, extra=""):
    refused = ", ".join(f"{c} {n}" for c, n in r["refused"].items()) or "none"
    lat = r["ack_latency"]
    print(f"  {name:<9} accepted/s {r['accepted_per_sec']:>9.0f}   accepted {r['accepted']:>8}"
          f"   refused {r['refused_total']} ({refused})   unanswered {r['unanswered']}"
          f"   ack p50/p99 {lat['p50_ms']:.2f}/{lat['p99_ms']:.2f} ms{extra}")
    for e in r["channel_errors"]:
        print(f"            error: {e}")

ours_rates, sri_rates = [], []
for i in range(1, rounds + 1):
    ours = json.load(open(f"{work}/ours-{i}.json"))
    sri = json.load(open(f"{work}/sri-{i}.json"))
    minted = int(open(f"{work}/ours-{i}.minted").read())
    print(f"round {i}: {ours['channels']} channels x {ours['in_flight']} in flight, "
          f"{ours['duration_secs']:.0f} s")
    unminted = ours["accepted"] - minted
    show("ours", ours, f"   minted {minted} ehash (1 per share"
         + (f"; {unminted} not minted within the wait)" if unminted else ", all)"))
    show("pool_sv2", sri)
    ours_rates.append(ours["accepted_per_sec"])
    sri_rates.append(sri["accepted_per_sec"])
o, s = sum(ours_rates) / rounds, sum(sri_rates) / rounds
print(f"mean accepted/s: ours {o:.0f}, pool_sv2 {s:.0f}; ours / pool_sv2 = "
      + (f"{o / s:.2f}" if s else "n/a"))
EOF
