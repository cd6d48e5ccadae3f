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
#   only when it is full, so keep IN_FLIGHT >= SHARE_BATCH), QUOTE_BATCH_MS (1000: the pool's
#   local config, config/pool.config.toml; production batches every 10 s, and 100 makes the
#   mint and the wallets do ten times the local config's work, docs/benchmarks.md),
#   BENCH_PORT_BASE (29000: ports BASE..BASE+50 on 127.0.0.1, below the ephemeral range so
#   no outgoing connection holds one),
#   HASHPOOL_BENCH_CACHE (~/.cache/hashpool-bench: where pool_sv2 is installed),
#   PROFILE (release; `debug` runs target/debug binaries), SKIP_BUILD=1 (use built binaries),
#   CARGO_TARGET_DIR (target), CARGO_PREFIX (a command cargo runs under, e.g. `flock LOCK nice`),
#   KEEP=1 (keep the work directory with configs and logs).
set -euo pipefail
cd "$(dirname "$0")/.."

CHANNELS=${CHANNELS:-4}
IN_FLIGHT=${IN_FLIGHT:-64}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-1}
QUOTE_BATCH_MS=${QUOTE_BATCH_MS:-1000}
CACHE=${HASHPOOL_BENCH_CACHE:-$HOME/.cache/hashpool-bench}
POOL_SV2="$CACHE/bin/pool_sv2"
# The stack (ports, keys, configs, process handling): scripts/bench-stack.sh.
# shellcheck source=scripts/bench-stack.sh
. scripts/bench-stack.sh

# --- binaries ---------------------------------------------------------------------------------
BINARIES="pool mint template-provider hashpool-wallet share-load" \
    build_stack pool mint template-provider hashpool-wallet-cli share-load
if [ ! -x "$POOL_SV2" ]; then
    if ! command -v capnp >/dev/null; then
        log "pool_sv2 needs the capnp compiler: apt-get install capnproto libcapnp-dev"
        as_root apt-get install -y capnproto libcapnp-dev
    fi
    log "cargo install pool_sv2 0.7.0 into $CACHE"
    cargo install pool_sv2 --version 0.7.0 --locked --root "$CACHE"
fi

# --- configuration ----------------------------------------------------------------------------
write_stack_configs
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
start_template_provider

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
    start_pool_and_mint "$dir" "$round"
    pool_pid=$POOL_PID mint_pid=$MINT_PID
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
