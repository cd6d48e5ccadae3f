#!/usr/bin/env bash
# Soak: our pool with ehash on (the durable ledger, the real mint, one `hashpool-wallet serve`
# per channel minting its quotes) under steady share load for DURATION seconds, with blocks
# found every 262,144 shares or so (TP_NBITS 1e400000: a maximal-target share is a block with
# probability 2^-18; at 2^-20 one tip in fifty outlived channels_sv2's 2^20 remembered shares
# per channel at this rate), so tips change, stale shares are refused honestly and every
# per-tip structure is flushed as in production. The pool's and the mint's RSS (also split into
# anonymous memory and mapped files) and open files are sampled every SAMPLE_SECS. At the end:
# the rate, refusals by code, shares never answered, whether every accepted share was minted,
# and whether RSS and open files stayed flat (after the first tenth of the run, the median of
# its last third within 10 % of its first third's: RSS saws with every block as per-tip
# structures fill and empty). A benchmark, not part of CI
# (docs/benchmarks.md, "Soak").
#
# Parameters (environment): DURATION (3600), CHANNELS (4), IN_FLIGHT (8: shares unanswered per
# channel; sets the rate), SAMPLE_SECS (30), TP_NBITS (1e400000), SOAK_OUT (a directory the
# samples and share-load's report are copied to), and those of
# scripts/bench-stack.sh (BENCH_PORT_BASE, PROFILE, SKIP_BUILD, CARGO_TARGET_DIR, KEEP...).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-3600}
CHANNELS=${CHANNELS:-4}
IN_FLIGHT=${IN_FLIGHT:-8}
SAMPLE_SECS=${SAMPLE_SECS:-30}
TP_NBITS=${TP_NBITS:-1e400000}
# shellcheck source=scripts/bench-stack.sh
. scripts/bench-stack.sh

BINARIES="pool mint template-provider hashpool-wallet share-load" \
    build_stack pool mint template-provider hashpool-wallet-cli share-load
write_stack_configs
start_template_provider
dir="$WORK/soak"
start_pool_and_mint "$dir" soak
keys=()
for i in $(seq 1 "$CHANNELS"); do
    w="$dir/wallet-$i"
    keys+=("$("$BIN/hashpool-wallet" --dir "$w" --mint "http://127.0.0.1:$MINT_HTTP" init --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["public_key"])')")
    start "wallet-$i" "$BIN/hashpool-wallet" --dir "$w" serve --listen 127.0.0.1:0 --claim-every 1
done

sample() { # pid: "rss_kB open_files anon_kB file_kB" (RssAnon: the heap; RssFile: mapped files)
    local fds mem
    fds=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    mem=$(awk '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {print r+0, a+0, f+0}' \
        "/proc/$1/status" 2>/dev/null || echo "0 0 0")
    set -- $mem
    echo "$1 $fds $2 $3"
}
(
    start_s=$(date +%s)
    while kill -0 "$POOL_PID" 2>/dev/null; do
        sqlite=$(curl -s "http://127.0.0.1:$MINT_MONITORING/metrics" |
            awk '/^hashpool_mint_sqlite_memory_bytes/ {printf "%d", $2 / 1024}')
        echo "$(($(date +%s) - start_s)) $(sample "$POOL_PID") $(sample "$MINT_PID") ${sqlite:-0}"
        sleep "$SAMPLE_SECS"
    done
) >"$WORK/samples" &
PIDS+=("$!")

log "soak: $CHANNELS channels x $IN_FLIGHT in flight for ${DURATION}s (nbits $TP_NBITS)"
users=()
for k in "${keys[@]}"; do users+=(--user "$k"); done
"$BIN/share-load" --pool "127.0.0.1:$POOL_PORT" --authority-key "$PUBLIC_KEY" \
    --channels "$CHANNELS" --in-flight "$IN_FLIGHT" --duration "$DURATION" \
    "${users[@]}" --json >"$WORK/soak.json"
accepted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accepted"])' "$WORK/soak.json")
minted=0
for _ in $(seq 1 120); do
    minted=0
    for i in $(seq 1 "$CHANNELS"); do
        b=$("$BIN/hashpool-wallet" --dir "$dir/wallet-$i" balance --json |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"])')
        minted=$((minted + b))
    done
    [ "$minted" -ge "$accepted" ] && break
    sleep 1
done
cp "$WORK/samples" "$WORK/samples.final"
[ -n "${SOAK_OUT:-}" ] && cp "$WORK/samples.final" "$WORK/soak.json" "$SOAK_OUT/"
# ERROR lines of our own code fail the soak. CDK's storage layer logs every failed query at
# ERROR, including those the mint handles: a resent request racing its first copy to the unique
# quote id (answered with the existing quote) and a busy database (answered `temporary-failure`,
# which the pool retries); those are counted apart.
errors=$(cat "$WORK"/pool-soak.log "$WORK"/mint-soak.log | grep " ERROR " | grep -c -v " ERROR cdk_" || true)
cdk_errors=$(cat "$WORK"/mint-soak.log | grep -c " ERROR cdk_" || true)

python3 - "$WORK/soak.json" "$WORK/samples.final" "$minted" "$errors" "$cdk_errors" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
rows = [list(map(int, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 10]
minted, errors, cdk_errors = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
refused = ", ".join(f"{c} {n}" for c, n in r["refused"].items()) or "none"
print(f"soak: {r['channels']} channels x {r['in_flight']} in flight, {r['duration_secs']:.0f} s")
lat = r["ack_latency"]
print(f"  accepted/s {r['accepted_per_sec']:.0f}   accepted {r['accepted']}   refused "
      f"{r['refused_total']} ({refused})   unanswered {r['unanswered']}   ack p50/p99 "
      f"{lat['p50_ms']:.2f}/{lat['p99_ms']:.2f} ms   new tips seen {r['new_tips']}")
for e in r["channel_errors"]:
    print(f"  channel error: {e}")
print(f"  minted {minted} ehash of {r['accepted']} accepted ({'all' if minted >= r['accepted'] else 'NOT all'})")
print(f"  ERROR lines of the pool and the mint: {errors}; CDK storage errors the mint handled: "
      f"{cdk_errors}")
ok = (minted >= r["accepted"] and r["unanswered"] == 0 and errors == 0
      and not r["channel_errors"])
# The load's samples after the first tenth (warm-up), up to its end. Per-tip structures fill
# and empty with every block, so RSS saws; flat means no trend: the median of the last third
# within 10 % of the first third's.
duration = r["duration_secs"]
warm = [x for x in rows if duration / 10 <= x[0] <= duration]
thirds = [warm[i * len(warm) // 3:(i + 1) * len(warm) // 3] for i in range(3)]
# Columns: time, then per role (pool, mint) RSS, open files, RssAnon, RssFile, then what SQLite
# holds in the mint (its gauge). The split is shown, not judged: it tells heap growth from pages
# of mapped files (SQLite's mmap) and from SQLite's page caches.
columns = [("pool RSS kB", 1, True), ("pool open files", 2, True), ("pool anon kB", 3, False),
           ("pool file kB", 4, False), ("mint RSS kB", 5, True), ("mint open files", 6, True),
           ("mint anon kB", 7, False), ("mint file kB", 8, False), ("mint SQLite kB", 9, False)]
for name, col, judged in columns:
    if not all(thirds):
        continue
    first, last = (statistics.median(x[col] for x in t) for t in (thirds[0], thirds[2]))
    vals = [x[col] for x in warm]
    change = (last - first) / first if first else 0.0
    flat = abs(change) <= 0.10
    if judged:
        ok &= flat
    verdict = ("flat" if flat else "NOT flat") if judged else "shown"
    print(f"  {name:16} first third {first:>9.0f}  last third {last:>9.0f}  ({change * 100:+.1f} %: "
          f"{verdict})  samples {min(vals)}..{max(vals)}")
print("soak passed" if ok else "soak FAILED")
sys.exit(0 if ok else 1)
PY
