# Shared by the benchmark scripts (sourced, not run): our template provider, pool and mint on
# 127.0.0.1, their configuration files and process handling. docs/benchmarks.md.
#
# Set before sourcing (defaults in brackets): BENCH_PORT_BASE (29000: ports BASE..BASE+50 on
# 127.0.0.1, below the ephemeral range so no outgoing connection holds one), PROFILE (release),
# CARGO_TARGET_DIR (target), SHARE_BATCH (1), QUOTE_BATCH_MS (100), POOL_SETTINGS_EXTRA and
# POOL_LIMITS_EXTRA (TOML lines added to the pool's [pool] and [limits] tables; empty),
# TP_NBITS (1d00ffff: the template provider's compact target; no maximal-target share is a block).
# KEEP=1 keeps the work directory with the configs and logs.

BASE=${BENCH_PORT_BASE:-29000}
PROFILE=${PROFILE:-release}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$TARGET_DIR/$PROFILE"
SHARE_BATCH=${SHARE_BATCH:-1}
QUOTE_BATCH_MS=${QUOTE_BATCH_MS:-100}
POOL_SETTINGS_EXTRA=${POOL_SETTINGS_EXTRA:-}
POOL_LIMITS_EXTRA=${POOL_LIMITS_EXTRA:-}
TP_NBITS=${TP_NBITS:-1d00ffff}

# The well-known SRI test authority keypair: local benchmarks only.
PUBLIC_KEY=9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72
SECRET_KEY=mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n
# One ehash per share: a maximal-target share proves one hash of work (1.2 / difficulty-1 work,
# as share-bench; the ledger rounds work to whole hashes).
UNIT_WORK=$(python3 -c 'print(repr(1.2 / 0x100010001))')

TP_PORT=$BASE TP_HTTP=$((BASE + 1))
POOL_PORT=$((BASE + 10)) MINT_LINK=$((BASE + 11)) POOL_MONITORING=$((BASE + 12))
POOL_METRICS=$((BASE + 13))
MINT_HTTP=$((BASE + 20)) MINT_MONITORING=$((BASE + 21))
STATS_INGEST=$((BASE + 30)) STATS_HTTP=$((BASE + 31)) WEB=$((BASE + 40))
SRI_PORT=$((BASE + 50))

log() { echo "==> $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- binaries ---------------------------------------------------------------------------------
# build_stack PACKAGE...: cargo build of the packages (release unless PROFILE=debug), unless
# SKIP_BUILD=1; CARGO_PREFIX (word-split, e.g. `flock /tmp/lock nice -n 10`) runs cargo under a
# lock or at a lower priority. Then checks that BIN holds every binary named in BINARIES.
build_stack() {
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        log "cargo build ($PROFILE): $*"
        local flags=() packages=()
        [ "$PROFILE" = release ] && flags=(--release)
        for p in "$@"; do packages+=(-p "$p"); done
        # shellcheck disable=SC2086 # CARGO_PREFIX is a command line on purpose
        ${CARGO_PREFIX:-} cargo build "${flags[@]}" "${packages[@]}"
    fi
    for b in ${BINARIES:-}; do
        [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (build it, or unset SKIP_BUILD)" >&2; exit 1; }
    done
}

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
# write_stack_configs: $WORK/tp.toml, shared.toml, pool.toml and mint.toml. The pool's and the
# mint's databases are under $WORK/ROUND/: replace ROUND per run (sed) for a fresh start.
write_stack_configs() {
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
# Mainnet's difficulty-1 target by default: no share is ever a block.
nbits = "$TP_NBITS"

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
$POOL_SETTINGS_EXTRA

[template_provider]
address = "127.0.0.1:$TP_PORT"
authority_public_key = "$PUBLIC_KEY"
reconnect_initial_ms = 500
reconnect_max_ms = 10000

[quotes]
batch_interval_ms = $QUOTE_BATCH_MS
retry_interval_ms = 5000

# Every limit at its default but the difficulty floor (every nonce a share) and those below.
[limits]
min_share_difficulty = 1e-30
$POOL_LIMITS_EXTRA
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
}

# start_pool_and_mint DIR NAME-SUFFIX: our pool and mint with their databases in DIR (fresh),
# waits until both listen; their pids in POOL_PID and MINT_PID.
POOL_PID= MINT_PID=
start_pool_and_mint() {
    local dir=$1 suffix=$2
    mkdir -p "$dir"
    sed "s|$WORK/ROUND/|$dir/|" "$WORK/pool.toml" >"$dir/pool.toml"
    sed "s|$WORK/ROUND/|$dir/|" "$WORK/mint.toml" >"$dir/mint.toml"
    start "pool-$suffix" "$BIN/pool" -c "$dir/pool.toml" -g "$WORK/shared.toml"
    POOL_PID=$LAST_PID
    start "mint-$suffix" "$BIN/mint" -c "$dir/mint.toml" -g "$WORK/shared.toml"
    MINT_PID=$LAST_PID
    wait_port "$POOL_PORT" "our pool"
    wait_port "$MINT_HTTP" "the mint"
}

# start_template_provider: our template provider (nBits TP_NBITS), listening.
start_template_provider() {
    log "template provider (nbits $TP_NBITS) on $TP_PORT"
    start tp "$BIN/template-provider" -c "$WORK/tp.toml"
    wait_port "$TP_PORT" "the template provider"
}
