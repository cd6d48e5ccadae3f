#!/usr/bin/env bash
# Many miners held by the pool: our template provider, pool and mint (release builds, the same
# stack as bench-share-load.sh: scripts/bench-stack.sh), then `share-load hold` opens N Noise
# SV2 connections to the pool, one standard channel each, gets each a job and an answer to one
# share, and holds them all while the pool's RSS (/proc/<pid>/status VmRSS) is measured: once
# all are set up, and again STEADY_SECS later (the template provider makes a new template every
# 5 s, each one a new job on every channel, and the pool keeps each channel's recent jobs).
# Prints the pool's RSS before / held / steady / after the release, RSS per connection =
# (held - before) / N (and the same at steady), the pool's own count of open miner connections
# and the share-load summary. A benchmark, not part of CI (docs/benchmarks.md, "Pool: SV2
# connections held, memory per connection").
#
# Exits non-zero unless every connection got a job and an answer and was held to the release,
# and the pool counted all N open while they were held.
#
# The pool's connection limits are raised through its config (`limits.max_connections`,
# `limits.max_connections_per_address`: every connection comes from 127.0.0.1;
# `limits.idle_timeout_secs` past the hold: a held connection sends nothing after its first
# share, where a real miner keeps sending), and the open file limit to its hard limit (the pool
# and share-load each need N descriptors and a few more).
#
# Parameters (environment):
#   CONNECTIONS (10000), RAMP connections started per second (1000), CONCURRENCY connections
#   setting up at once (256), SETUP_TIMEOUT secs per connection (120), SETTLE secs from all
#   set up to the first measurement (5), SAMPLES RSS samples 1 s apart per measurement, the
#   largest counts (5), STEADY_SECS from all set up to the second measurement (100: 20 new
#   templates; 0 skips it), MAX_HOLD secs share-load holds at most if never released (900, or
#   STEADY_SECS + 300 when longer),
#   BENCH_PORT_BASE (29000), PROFILE (release), SKIP_BUILD=1 (use built binaries),
#   CARGO_TARGET_DIR (target), CARGO_PREFIX (a command cargo runs under, e.g. `flock LOCK nice`),
#   KEEP=1 (keep the work directory with configs and logs).
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-10000}
RAMP=${RAMP:-1000}
CONCURRENCY=${CONCURRENCY:-256}
SETUP_TIMEOUT=${SETUP_TIMEOUT:-120}
SETTLE=${SETTLE:-5}
SAMPLES=${SAMPLES:-5}
STEADY_SECS=${STEADY_SECS:-100}
MAX_HOLD=${MAX_HOLD:-$((STEADY_SECS + 300 > 900 ? STEADY_SECS + 300 : 900))}
# Room above N in the pool's limits.
LIMIT=$((CONNECTIONS + 1000))
POOL_LIMITS_EXTRA="max_connections = $LIMIT
max_connections_per_address = $LIMIT
idle_timeout_secs = $((MAX_HOLD + 600))"
# shellcheck source=scripts/bench-stack.sh
. scripts/bench-stack.sh
# The pool's own metrics: its count of open miner connections.
POOL_SETTINGS_EXTRA="metrics_address = \"127.0.0.1:$POOL_METRICS\""
# Every channel's ehash is locked to one key (secp256k1's generator: a benchmark only).
LOCKING_KEY=0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798

# --- limits of this machine -------------------------------------------------------------------
need=$((CONNECTIONS + 512))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
    echo "the open file hard limit ($hard) is below $need (CONNECTIONS + 512, for the pool and" \
        "for share-load each): raise it (limits.conf, or run as root) or lower CONNECTIONS" >&2
    exit 1
fi
ulimit -n "$hard"
read -r port_low port_high </proc/sys/net/ipv4/ip_local_port_range
if [ $((port_high - port_low + 1)) -lt "$CONNECTIONS" ]; then
    echo "the ephemeral port range ($port_low-$port_high) has fewer than $CONNECTIONS ports:" \
        "widen net.ipv4.ip_local_port_range or lower CONNECTIONS" >&2
    exit 1
fi
log "open files: $(ulimit -n); ephemeral ports $port_low-$port_high;" \
    "accept backlog cap (net.core.somaxconn) $(cat /proc/sys/net/core/somaxconn)"

# --- binaries and configuration ---------------------------------------------------------------
# The same packages as bench-share-load.sh (the wallet unused here): one feature set, one cache.
BINARIES="pool mint template-provider share-load" \
    build_stack pool mint template-provider hashpool-wallet-cli share-load
write_stack_configs

rss_kb() { # pid: VmRSS in kB
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}
RSS_MAX=0 RSS_SAMPLES=
sample_rss() { # pid: SAMPLES samples 1 s apart (RSS_SAMPLES), the largest in RSS_MAX
    local r
    RSS_MAX=0 RSS_SAMPLES=
    for i in $(seq 1 "$SAMPLES"); do
        r=$(rss_kb "$1")
        RSS_SAMPLES="$RSS_SAMPLES${RSS_SAMPLES:+ }$r"
        if [ "$r" -gt "$RSS_MAX" ]; then RSS_MAX=$r; fi
        if [ "$i" -lt "$SAMPLES" ]; then sleep 1; fi
    done
}
cpu_ticks() { # pid: user + system CPU time in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
pool_connections() { # the pool's own gauge of open miner connections
    curl -fsS "http://127.0.0.1:$POOL_METRICS/metrics" |
        awk '$1 == "hashpool_pool_miner_connections" { print $2 }'
}

# --- run --------------------------------------------------------------------------------------
start_template_provider
start_pool_and_mint "$WORK/run" run
log "pool up (pid $POOL_PID); settling ${SETTLE}s for its first template"
sleep "$SETTLE"
rss_before=$(rss_kb "$POOL_PID")
log "pool RSS before: $rss_before kB; share-load hold: $CONNECTIONS connections," \
    "$RAMP/s, $CONCURRENCY at once"

"$BIN/share-load" hold --pool "127.0.0.1:$POOL_PORT" --authority-key "$PUBLIC_KEY" \
    --user "$LOCKING_KEY" --connections "$CONNECTIONS" --ramp "$RAMP" \
    --concurrency "$CONCURRENCY" --setup-timeout "$SETUP_TIMEOUT" --hold-secs "$MAX_HOLD" \
    --ready-file "$WORK/ready.json" --until-file "$WORK/release" --json \
    >"$WORK/hold.json" 2>"$WORK/share-load.log" &
load_pid=$!
PIDS+=("$load_pid")

# Ready: every connection answered or failed, and the answered ones held.
deadline=$((SECONDS + CONNECTIONS / (RAMP > 0 ? RAMP : 1000) + SETUP_TIMEOUT + 120))
while [ ! -f "$WORK/ready.json" ]; do
    if ! kill -0 "$load_pid" 2>/dev/null; then
        echo "share-load ended before it was ready:" >&2
        cat "$WORK/share-load.log" >&2
        KEEP=1
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "share-load not ready in time (log: $WORK/share-load.log)" >&2
        KEEP=1
        exit 1
    fi
    sleep 0.2
done
ready_at=$SECONDS
log "$(tail -n 1 "$WORK/share-load.log")"
log "settling ${SETTLE}s, then $SAMPLES RSS samples 1 s apart"
sleep "$SETTLE"
sample_rss "$POOL_PID"
rss_held=$RSS_MAX held_samples=$RSS_SAMPLES
cpu_from=$(cpu_ticks "$POOL_PID") cpu_from_at=$(date +%s.%N)
rss_steady=0 steady_samples=
if [ "$STEADY_SECS" -gt 0 ]; then
    wait_for=$((ready_at + STEADY_SECS - SECONDS))
    if [ "$wait_for" -gt 0 ]; then
        log "holding ${wait_for}s more (to ${STEADY_SECS}s after the setup), then $SAMPLES samples"
        sleep "$wait_for"
    fi
    sample_rss "$POOL_PID"
    rss_steady=$RSS_MAX steady_samples=$RSS_SAMPLES
fi
# CPU of the pool while it only holds the connections (templates every 5 s, no shares).
cpu_to=$(cpu_ticks "$POOL_PID") cpu_to_at=$(date +%s.%N)
log "pool CPU while holding: $(awk -v a="$cpu_from" -v b="$cpu_to" -v s="$cpu_from_at" \
    -v e="$cpu_to_at" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.1f%% of a core over %.0f s", 100 * (b - a) / hz / (e - s), e - s }')"
held_secs=$((SECONDS - ready_at))
pool_open=$(pool_connections || true)
load_rss=$(rss_kb "$load_pid" || echo 0)
touch "$WORK/release"
load_status=0
wait "$load_pid" || load_status=$?
sleep 2
rss_after=$(rss_kb "$POOL_PID")
pool_open_after=$(pool_connections || true)

# --- results ----------------------------------------------------------------------------------
python3 - "$WORK/hold.json" "$CONNECTIONS" "$rss_before" "$rss_held" "$held_samples" \
    "$rss_steady" "$steady_samples" "$held_secs" "$rss_after" "${pool_open:-unknown}" \
    "${pool_open_after:-unknown}" "$load_rss" "$load_status" <<'EOF'
import json, sys
a = sys.argv[1:]
path, n = a[0], int(a[1])
before, held, held_samples = int(a[2]), int(a[3]), a[4]
steady, steady_samples, held_secs = int(a[5]), a[6], int(a[7])
after, pool_open, pool_open_after, load_rss, status = int(a[8]), a[9], a[10], int(a[11]), int(a[12])
try:
    r = json.load(open(path))
except (OSError, ValueError) as e:
    print(f"no share-load report ({e}); share-load exit status {status}")
    sys.exit(1)

def by_count(d):
    return ", ".join(f"{v} {k}" for k, v in d.items()) or "none"

def per_conn(kb):  # bytes per connection over the RSS before
    return (kb - before) * 1024 / n

def line(name, kb, samples):
    b = per_conn(kb)
    print(f"  {name:<28} {kb / 1024:7.1f} MiB   per connection {b / 1024:6.2f} KiB ({b:,.0f} bytes)"
          f"   target <= 20 KB: {'met' if b <= 20_000 else 'NOT met'}   (samples kB: {samples})")

print(f"pool RSS, {n} connections (per connection = (RSS - before) / {n}):")
print(f"  {'before connecting':<28} {before / 1024:7.1f} MiB")
line("held, all set up", held, held_samples)
if steady:
    line(f"held, {held_secs} s after the setup", steady, steady_samples)
print(f"  {'2 s after the release':<28} {after / 1024:7.1f} MiB")
print(f"pool's open miner connections: {pool_open} while held, {pool_open_after} after the release")
print(f"share-load RSS: {load_rss / 1024:.1f} MiB while holding ({load_rss / n:.2f} KiB per connection)")
print(f"connections        {r['connections']} asked, {r['started']} started, {r['opened']} opened a channel,"
      f" {r['with_job']} got a job")
print(f"answered           {r['answered']} ({r['accepted']} accepted; refused: {by_count(r['refused'])})")
print(f"failed             {r['failed']} ({by_count(r['failures'])})")
print(f"held to release    {r['held']} (lost while held: {by_count(r['lost_during_hold'])}),"
      f" held {r['held_secs']:.1f} s")
lat = r["setup_latency"]
print(f"setup              {r['setup_secs']:.1f} s for all; connect -> answer p50 / p99 / max"
      f" {lat['p50_ms']:.1f} / {lat['p99_ms']:.1f} / {lat['max_ms']:.1f} ms")
problems = []
if not r["complete"] or r["with_job"] != n or r["answered"] != n or r["held"] != n:
    problems.append("not every connection got a job and an answer and was held to the release")
if pool_open == "unknown" or float(pool_open) < n:
    problems.append(f"the pool counted {pool_open} open miner connections while held, not {n}")
if status != 0:
    problems.append(f"share-load exited with status {status}")
for p in problems:
    print(f"FAILED: {p}")
sys.exit(1 if problems else 0)
EOF
